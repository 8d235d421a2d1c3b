package main

import (
	"encoding/json"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sjson "sigs.k8s.io/json"
)

// goTypes are the kinds decoded into their API Go types; anything else
// needs a CRD schema.
var goTypes = map[string]func() any{
	"/v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"/v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"/v1/Secret":                               func() any { return &corev1.Secret{} },
	"/v1/Service":                              func() any { return &corev1.Service{} },
	"/v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"apps/v1/DaemonSet":                        func() any { return &appsv1.DaemonSet{} },
	"apps/v1/Deployment":                       func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                      func() any { return &appsv1.StatefulSet{} },
	"policy/v1/PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"rbac.authorization.k8s.io/v1/ClusterRole": func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	"monitoring.coreos.com/v1/PodMonitor":             func() any { return &monitoringv1.PodMonitor{} },
	"monitoring.coreos.com/v1/ServiceMonitor":         func() any { return &monitoringv1.ServiceMonitor{} },
}

func typeKey(group, version, kind string) string { return group + "/" + version + "/" + kind }

// decode checks one resource; it returns the problems found.
func decode(d *doc, crds crdSchemas) []string {
	key := typeKey(d.group, d.vers, d.kind)
	if newObj, ok := goTypes[key]; ok {
		obj := newObj()
		problems, decoded := strictUnmarshal(d.json, obj)
		if decoded {
			// Unknown fields were dropped; references can still be checked.
			d.obj = obj
		}
		return problems
	}
	if s, ok := crds[key]; ok {
		var generic map[string]any
		if problems, _ := strictUnmarshal(d.json, &generic); len(problems) > 0 {
			return problems
		}
		// metadata is ObjectMeta for every kind; the CRD schema leaves it open.
		metaJSON, err := json.Marshal(generic["metadata"])
		if err != nil {
			return []string{err.Error()}
		}
		problems, _ := strictUnmarshal(metaJSON, &metav1.ObjectMeta{})
		delete(generic, "metadata")
		return append(problems, s.validate(generic, "")...)
	}
	return []string{fmt.Sprintf("no API type or CRD schema known for %s (apiVersion %q)", d.kind, apiVersion(d.group, d.vers))}
}

func apiVersion(group, version string) string {
	if group == "" {
		return version
	}
	return group + "/" + version
}

// strictUnmarshal decodes like the API server's strict field validation:
// case-sensitive, unknown and duplicate fields reported. decoded is false
// when the value could not be decoded at all (a wrong type).
func strictUnmarshal(data []byte, into any) (problems []string, decoded bool) {
	strict, err := k8sjson.UnmarshalStrict(data, into, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
	if err != nil {
		return []string{err.Error()}, false
	}
	for _, e := range strict {
		problems = append(problems, e.Error())
	}
	return problems, true
}
