package main

import (
	"fmt"
	"regexp"
	"strconv"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// workload is a pod template and the selector that must match it.
type workload struct {
	doc      *doc
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
}

// checkReferences finds what decoding cannot: references between fields and
// resources that the API server or the kubelet would reject or never match.
func checkReferences(docs []*doc) []string {
	var problems []string
	var workloads []workload
	configMaps := map[string]bool{}
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			workloads = append(workloads, workload{d, o.Spec.Selector, o.Spec.Template})
		case *appsv1.DaemonSet:
			workloads = append(workloads, workload{d, o.Spec.Selector, o.Spec.Template})
		case *appsv1.StatefulSet:
			workloads = append(workloads, workload{d, o.Spec.Selector, o.Spec.Template})
		case *corev1.ConfigMap:
			configMaps[o.Name] = true
		}
	}
	for _, w := range workloads {
		problems = append(problems, checkWorkload(w, configMaps)...)
	}
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.Service:
			problems = append(problems, checkService(d, o, workloads)...)
		case *monitoringv1.PodMonitor:
			problems = append(problems, checkPodMonitor(d, o, workloads)...)
		}
	}
	return problems
}

func checkWorkload(w workload, configMaps map[string]bool) []string {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: "+format, append([]any{w.doc}, args...)...))
	}
	selector, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || w.selector == nil {
		add("spec.selector is missing or invalid: %v", err)
	} else if !selector.Matches(labels.Set(w.template.Labels)) {
		add("spec.selector %v does not match the pod template's labels %v", selector, w.template.Labels)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range w.template.Spec.Volumes {
		volumes[v.Name] = v
		if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
			add("volume %q refers to ConfigMap %q, which is not among the resources", v.Name, v.ConfigMap.Name)
		}
	}
	for _, c := range append(append([]corev1.Container{}, w.template.Spec.InitContainers...), w.template.Spec.Containers...) {
		ports := map[string]int32{}
		numbers := map[int32]bool{}
		for _, p := range c.Ports {
			if p.Name != "" {
				for _, msg := range validation.IsValidPortName(p.Name) {
					add("container %q port name %q: %s", c.Name, p.Name, msg)
				}
				ports[p.Name] = p.ContainerPort
			}
			numbers[p.ContainerPort] = true
		}
		for kind, probe := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
			if probe == nil {
				continue
			}
			if probe.HTTPGet != nil {
				checkPort(probe.HTTPGet.Port, ports, numbers, func(msg string) { add("container %q %s: %s", c.Name, kind, msg) })
			} else if probe.TCPSocket != nil {
				checkPort(probe.TCPSocket.Port, ports, numbers, func(msg string) { add("container %q %s: %s", c.Name, kind, msg) })
			}
		}
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				add("container %q mounts volume %q, which the pod does not declare", c.Name, m.Name)
			}
		}
		if port, ok := w.template.Annotations["prometheus.io/port"]; ok && c.Name == w.template.Spec.Containers[0].Name {
			n, err := strconv.Atoi(port)
			if err != nil || !numbers[int32(n)] {
				add("annotation prometheus.io/port=%q is not a port of container %q", port, c.Name)
			}
		}
	}
	return problems
}

func checkPort(port intstr.IntOrString, names map[string]int32, numbers map[int32]bool, report func(string)) {
	if port.Type == intstr.String {
		if _, ok := names[port.StrVal]; !ok {
			report(fmt.Sprintf("port %q is not a named port of the container", port.StrVal))
		}
	} else if !numbers[port.IntVal] {
		report(fmt.Sprintf("port %d is not declared by the container", port.IntVal))
	}
}

// selected returns the workloads whose pod labels a selector matches.
func selected(selector labels.Selector, workloads []workload) []workload {
	var found []workload
	for _, w := range workloads {
		if !selector.Empty() && selector.Matches(labels.Set(w.template.Labels)) {
			found = append(found, w)
		}
	}
	return found
}

func hasPortNamed(w workload, name string) bool {
	for _, c := range w.template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func checkService(d *doc, s *corev1.Service, workloads []workload) []string {
	if len(s.Spec.Selector) == 0 {
		return nil // endpoints managed by hand
	}
	targets := selected(labels.SelectorFromSet(s.Spec.Selector), workloads)
	if len(targets) == 0 {
		return []string{fmt.Sprintf("%s: selector %v matches no pod template", d, s.Spec.Selector)}
	}
	var problems []string
	for _, p := range s.Spec.Ports {
		if p.TargetPort.Type != intstr.String {
			continue
		}
		for _, w := range targets {
			if !hasPortNamed(w, p.TargetPort.StrVal) {
				problems = append(problems, fmt.Sprintf("%s: targetPort %q is not a named port of %s", d, p.TargetPort.StrVal, w.doc))
			}
		}
	}
	return problems
}

// scrapeProtocols are the values the PodMonitor CRD's enum allows; the Go
// type is a plain string, so decoding alone would accept a typo.
var scrapeProtocols = map[monitoringv1.ScrapeProtocol]bool{
	monitoringv1.PrometheusProto: true, monitoringv1.PrometheusText0_0_4: true, monitoringv1.PrometheusText1_0_0: true,
	monitoringv1.OpenMetricsText0_0_1: true, monitoringv1.OpenMetricsText1_0_0: true,
}

// promDuration is the CRD's pattern for monitoringv1.Duration, simplified: units in order are not enforced.
var promDuration = regexp.MustCompile(`^(0|([0-9]+(ms|s|m|h|d|w|y))+)$`)

func checkPodMonitor(d *doc, m *monitoringv1.PodMonitor, workloads []workload) []string {
	var problems []string
	for _, p := range m.Spec.ScrapeProtocols {
		if !scrapeProtocols[p] {
			problems = append(problems, fmt.Sprintf("%s: scrapeProtocols: %q is not a scrape protocol", d, p))
		}
	}
	for _, e := range m.Spec.PodMetricsEndpoints {
		for field, value := range map[string]monitoringv1.Duration{"interval": e.Interval, "scrapeTimeout": e.ScrapeTimeout} {
			if value != "" && !promDuration.MatchString(string(value)) {
				problems = append(problems, fmt.Sprintf("%s: %s: %q is not a Prometheus duration", d, field, value))
			}
		}
	}
	selector, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
	if err != nil {
		return append(problems, fmt.Sprintf("%s: selector: %v", d, err))
	}
	targets := selected(selector, workloads)
	if len(targets) == 0 {
		return append(problems, fmt.Sprintf("%s: selector %v matches no pod template", d, selector))
	}
	for _, e := range m.Spec.PodMetricsEndpoints {
		if e.Port == nil {
			problems = append(problems, fmt.Sprintf("%s: podMetricsEndpoints entry without a port name", d))
			continue
		}
		for _, w := range targets {
			if !hasPortNamed(w, *e.Port) {
				problems = append(problems, fmt.Sprintf("%s: port %q is not a named port of %s", d, *e.Port, w.doc))
			}
		}
	}
	return problems
}
