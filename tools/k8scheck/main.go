// Command k8scheck checks Kubernetes manifests strictly, without a cluster.
//
//	k8scheck [-crd crd.yaml]... PATH...
//
// A PATH is a kustomization directory, rendered with the kustomize API as
// `kubectl apply -k` would, or a YAML file of manifests. Every resource is
// decoded into its Kubernetes API Go type the way the API server's strict
// field validation does (unknown, duplicate or mis-cased fields and wrong
// types are errors); a custom resource with no Go type here is checked
// against the OpenAPI schema of the CRD given with -crd, unknown fields
// rejected. Then references between the resources are checked (probe and
// Service ports, selectors, volumes). Exit status 1 on any problem.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// doc is one rendered resource.
type doc struct {
	source string // the PATH it came from
	json   []byte
	kind   string
	group  string // "" for the core group
	vers   string
	name   string
	obj    any // the decoded Go value, when the kind has one
}

func (d *doc) String() string { return fmt.Sprintf("%s: %s/%s", d.source, d.kind, d.name) }

type crdFlags []string

func (c *crdFlags) String() string     { return strings.Join(*c, ",") }
func (c *crdFlags) Set(v string) error { *c = append(*c, v); return nil }

func main() {
	var crdPaths crdFlags
	flag.Var(&crdPaths, "crd", "a CustomResourceDefinition YAML file (repeatable)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: k8scheck [-crd crd.yaml]... PATH...")
		os.Exit(2)
	}
	crds := crdSchemas{}
	for _, path := range crdPaths {
		if err := crds.load(path); err != nil {
			fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
			os.Exit(2)
		}
	}
	var problems []string
	total := 0
	for _, path := range flag.Args() {
		docs, err := load(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		for _, d := range docs {
			for _, p := range decode(d, crds) {
				problems = append(problems, fmt.Sprintf("%s: %s", d, p))
			}
			fmt.Printf("resource %s %s/%s\n", path, d.kind, d.name)
		}
		problems = append(problems, checkReferences(docs)...)
		total += len(docs)
	}
	for _, p := range problems {
		fmt.Printf("problem %s\n", p)
	}
	fmt.Printf("k8scheck: %d resources, %d problems\n", total, len(problems))
	if len(problems) > 0 || total == 0 {
		os.Exit(1)
	}
}
