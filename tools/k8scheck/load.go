package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// load renders a kustomization directory or splits a YAML file into resources.
func load(path string) ([]*doc, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var raw [][]byte
	if info.IsDir() {
		raw, err = render(path)
	} else {
		raw, err = split(path)
	}
	if err != nil {
		return nil, err
	}
	docs := make([]*doc, 0, len(raw))
	for i, y := range raw {
		// YAMLToJSONStrict rejects duplicate keys, which plain YAML tolerates.
		j, err := yaml.YAMLToJSONStrict(y)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		d, err := header(path, j)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		docs = append(docs, d)
	}
	return docs, nil
}

func render(dir string) ([][]byte, error) {
	options := krusty.MakeDefaultOptions()
	resources, err := krusty.MakeKustomizer(options).Run(filesys.MakeFsOnDisk(), filepath.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize: %w", err)
	}
	var out [][]byte
	for _, r := range resources.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		out = append(out, y)
	}
	return out, nil
}

func split(file string) ([][]byte, error) {
	content, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, part := range docSeparator.Split(string(content), -1) {
		if strings.TrimSpace(stripComments(part)) != "" {
			out = append(out, []byte(part))
		}
	}
	return out, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// header reads apiVersion, kind and metadata.name.
func header(source string, j []byte) (*doc, error) {
	var h struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.NewDecoder(bytes.NewReader(j)).Decode(&h); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if h.APIVersion == "" || h.Kind == "" || h.Metadata.Name == "" {
		return nil, fmt.Errorf("apiVersion, kind and metadata.name are required (got %q, %q, %q)", h.APIVersion, h.Kind, h.Metadata.Name)
	}
	group, version := "", h.APIVersion
	if i := strings.LastIndex(h.APIVersion, "/"); i >= 0 {
		group, version = h.APIVersion[:i], h.APIVersion[i+1:]
	}
	return &doc{source: source, json: j, kind: h.Kind, group: group, vers: version, name: h.Metadata.Name}, nil
}
