package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// schema is the part of a CRD's OpenAPI v3 schema (apiextensions.k8s.io/v1
// JSONSchemaProps) that decides which fields exist and what they hold.
type schema struct {
	Type                 string             `json:"type"`
	Properties           map[string]*schema `json:"properties"`
	AdditionalProperties *schemaOrBool      `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	Required             []string           `json:"required"`
	Enum                 []any              `json:"enum"`
	Pattern              string             `json:"pattern"`
	PreserveUnknown      bool               `json:"x-kubernetes-preserve-unknown-fields"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string"`
	EmbeddedResource     bool               `json:"x-kubernetes-embedded-resource"`
}

type schemaOrBool struct {
	allowed bool
	schema  *schema
}

func (s *schemaOrBool) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, &s.allowed); err == nil {
		return nil
	}
	s.allowed = true
	return json.Unmarshal(data, &s.schema)
}

// crdSchemas maps "group/version/Kind" to the version's schema.
type crdSchemas map[string]*schema

func (c crdSchemas) load(path string) error {
	content, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	parts, err := split(path)
	if err != nil {
		return err
	}
	found := 0
	for _, part := range parts {
		var crd struct {
			Kind string `json:"kind"`
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema *schema `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(part, &crd); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema.OpenAPIV3Schema != nil {
				c[typeKey(crd.Spec.Group, v.Name, crd.Spec.Names.Kind)] = v.Schema.OpenAPIV3Schema
				found++
			}
		}
	}
	if found == 0 {
		return fmt.Errorf("%s: no CustomResourceDefinition with a schema (%d bytes)", path, len(content))
	}
	return nil
}

// validate returns one line per violation; at names the field ("" is the root).
func (s *schema) validate(value any, at string) []string {
	where := at
	if where == "" {
		where = "."
	}
	if s.IntOrString {
		if _, isString := value.(string); isString || isInteger(value) {
			return nil
		}
		return []string{fmt.Sprintf("%s: %v is neither an integer nor a string", where, value)}
	}
	var problems []string
	if len(s.Enum) > 0 && !inEnum(value, s.Enum) {
		problems = append(problems, fmt.Sprintf("%s: %v is not one of %v", where, value, s.Enum))
	}
	switch s.Type {
	case "object":
		return append(problems, s.validateObject(value, at, where)...)
	case "array":
		items, ok := value.([]any)
		if !ok {
			return append(problems, fmt.Sprintf("%s: want an array, got %T", where, value))
		}
		for i, item := range items {
			if s.Items != nil {
				problems = append(problems, s.Items.validate(item, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case "string":
		text, ok := value.(string)
		if !ok {
			return append(problems, fmt.Sprintf("%s: want a string, got %v", where, value))
		}
		// CRD patterns are ECMA-262; one RE2 cannot compile is not checked.
		if re, err := regexp.Compile(s.Pattern); s.Pattern != "" && err == nil && !re.MatchString(text) {
			problems = append(problems, fmt.Sprintf("%s: %q does not match %s", where, text, s.Pattern))
		}
	case "integer":
		if !isInteger(value) {
			problems = append(problems, fmt.Sprintf("%s: want an integer, got %v", where, value))
		}
	case "number":
		if _, ok := value.(float64); !ok && !isInteger(value) {
			problems = append(problems, fmt.Sprintf("%s: want a number, got %v", where, value))
		}
	case "boolean":
		if _, ok := value.(bool); !ok {
			problems = append(problems, fmt.Sprintf("%s: want a boolean, got %v", where, value))
		}
	}
	return problems
}

func (s *schema) validateObject(value any, at, where string) []string {
	fields, ok := value.(map[string]any)
	if !ok {
		return []string{fmt.Sprintf("%s: want an object, got %v", where, value)}
	}
	var problems []string
	for _, name := range s.Required {
		if _, present := fields[name]; !present {
			problems = append(problems, fmt.Sprintf("%s: required field %q is missing", where, name))
		}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		child := at + "." + name
		switch {
		case s.Properties[name] != nil:
			problems = append(problems, s.Properties[name].validate(fields[name], child)...)
		case s.AdditionalProperties != nil && s.AdditionalProperties.schema != nil:
			problems = append(problems, s.AdditionalProperties.schema.validate(fields[name], child)...)
		case s.AdditionalProperties != nil && s.AdditionalProperties.allowed, s.PreserveUnknown:
		case s.EmbeddedResource && (name == "apiVersion" || name == "kind" || name == "metadata"):
		default:
			problems = append(problems, fmt.Sprintf("%s: unknown field %q", where, strings.TrimPrefix(name, ".")))
		}
	}
	return problems
}

// isInteger: sigs.k8s.io/json decodes integers as int64, others as float64.
func isInteger(value any) bool {
	switch n := value.(type) {
	case int64:
		return true
	case float64:
		return n == math.Trunc(n)
	}
	return false
}

func inEnum(value any, enum []any) bool {
	for _, allowed := range enum {
		if fmt.Sprint(allowed) == fmt.Sprint(value) {
			return true
		}
	}
	return false
}
