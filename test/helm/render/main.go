// Command render renders a Helm chart the way `helm template` does, for tests on machines where Helm
// cannot be installed. It uses Go's text/template with sprig (the libraries Helm itself uses) and
// re-implements the small part of Helm that charts see:
//
//   - values: the chart's values.yaml coalesced with the -f files (later files win, maps merge
//     deeply, a null removes a default), numbers typed float64 as Helm's JSON round trip makes them;
//   - objects: .Values .Release .Chart .Capabilities .Files .Template;
//   - functions: sprig (without env/expandenv, as in Helm) plus include, tpl, required, fail,
//     toYaml, fromYaml, toJson, fromJson, fromYamlArray, fromJsonArray and lookup (always empty);
//   - output: one "# Source:" document per template that renders to something, "<no value>"
//     removed, templates whose name starts with "_" only defined, NOTES.txt rendered separately;
//   - errors from fail/required worded as Helm does: "execution error at (FILE:LINE:COL): MESSAGE".
//
// Values are not checked against values.schema.json here: the tests do that with a JSON Schema
// validator on the coalesced values, which --json prints.
//
// Build offline with Debian's packages (golang-go, golang-github-masterminds-sprig-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o render ./test/helm/render
//
// Usage: render --chart DIR [-f values.yaml]... [--release NAME] [--namespace NS] [--json] [--strict] [--values-only]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

const recursionMaxNums = 1000

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	var files valueFiles
	var apiVersions valueFiles
	chartDir := flag.String("chart", "", "chart directory")
	release := flag.String("release", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version for .Capabilities")
	asJSON := flag.Bool("json", false, "print {manifests, notes, values} as JSON")
	isUpgrade := flag.Bool("upgrade", false, "render as an upgrade (.Release.IsUpgrade)")
	valuesOnly := flag.Bool("values-only", false, "print the coalesced values as JSON, render nothing")
	strict := flag.Bool("strict", false, "fail on a missing map key, as `helm lint --strict` does")
	flag.Var(&files, "f", "values file (repeatable)")
	flag.Var(&files, "values", "values file (repeatable)")
	flag.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		fmt.Fprintln(os.Stderr, "Error: --chart is required")
		os.Exit(2)
	}
	if *valuesOnly {
		values, err := loadValues(*chartDir, files)
		if err != nil {
			fmt.Fprintf(os.Stderr, "Error: %s\n", err)
			os.Exit(1)
		}
		out, _ := json.Marshal(values)
		os.Stdout.Write(append(out, '\n'))
		return
	}
	result, err := render(*chartDir, files, *release, *namespace, *kubeVersion, apiVersions, *isUpgrade, *strict)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s\n", err)
		os.Exit(1)
	}
	if *asJSON {
		out, err := json.Marshal(result)
		if err != nil {
			fmt.Fprintf(os.Stderr, "Error: %s\n", err)
			os.Exit(1)
		}
		os.Stdout.Write(out)
		os.Stdout.WriteString("\n")
		return
	}
	for _, m := range result.Manifests {
		fmt.Printf("---\n# Source: %s\n%s\n", m.Source, m.Content)
	}
}

type manifest struct {
	Source  string `json:"source"`
	Content string `json:"content"`
}

type renderResult struct {
	Manifests []manifest             `json:"manifests"`
	Notes     string                 `json:"notes"`
	Values    map[string]interface{} `json:"values"`
	Chart     map[string]interface{} `json:"chart"`
}

// ---- the chart ---------------------------------------------------------------------------------

var chartKeys = map[string]string{
	"apiVersion": "APIVersion", "name": "Name", "version": "Version", "appVersion": "AppVersion",
	"description": "Description", "type": "Type", "kubeVersion": "KubeVersion", "home": "Home",
	"icon": "Icon", "sources": "Sources", "keywords": "Keywords", "maintainers": "Maintainers",
	"annotations": "Annotations", "deprecated": "Deprecated", "dependencies": "Dependencies",
}

func render(dir string, valueFiles []string, release, namespace, kubeVersion string, extraAPIs []string, isUpgrade, strict bool) (*renderResult, error) {
	chartFile, err := readYAMLMap(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, fmt.Errorf("Chart.yaml: %w", err)
	}
	chart := map[string]interface{}{}
	for key, value := range chartFile {
		if name, ok := chartKeys[key]; ok {
			chart[name] = value
		}
	}
	name, _ := chart["Name"].(string)
	if name == "" {
		return nil, errors.New("Chart.yaml: name is required")
	}

	values, err := loadValues(dir, valueFiles)
	if err != nil {
		return nil, err
	}

	templates, others, err := loadFiles(dir, name)
	if err != nil {
		return nil, err
	}

	major, minor := kubeMajorMinor(kubeVersion)
	capabilities := map[string]interface{}{
		"KubeVersion": map[string]interface{}{"Version": kubeVersion, "GitVersion": kubeVersion, "Major": major, "Minor": minor},
		"APIVersions": apiVersionSet(append(defaultAPIVersions(), extraAPIs...)),
		"HelmVersion": map[string]interface{}{"Version": "v3.16.0"},
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chart,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": !isUpgrade, "IsUpgrade": isUpgrade, "Revision": 1,
		},
		"Capabilities": capabilities,
		"Files":        others,
	}

	t := template.New("gotpl")
	if strict {
		t.Option("missingkey=error")
	} else {
		t.Option("missingkey=zero")
	}
	t.Funcs(funcMap(t))
	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	// Helm's order: deeper paths first, then names in reverse order.
	sort.Slice(names, func(i, j int) bool {
		di, dj := strings.Count(names[i], "/"), strings.Count(names[j], "/")
		if di != dj {
			return di > dj
		}
		return names[i] > names[j]
	})
	for _, n := range names {
		if _, err := t.New(n).Parse(templates[n]); err != nil {
			return nil, cleanupParseError(err)
		}
	}

	result := &renderResult{Values: values, Chart: chart}
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		vals := copyTop(top, n, name)
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, n, vals); err != nil {
			return nil, cleanupExecError(n, err)
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			result.Notes = out
			continue
		}
		if strings.TrimSpace(out) == "" {
			continue
		}
		result.Manifests = append(result.Manifests, manifest{Source: n, Content: out})
	}
	return result, nil
}

func copyTop(top map[string]interface{}, templateName, chartName string) map[string]interface{} {
	vals := make(map[string]interface{}, len(top)+1)
	for k, v := range top {
		vals[k] = v
	}
	vals["Template"] = map[string]interface{}{"Name": templateName, "BasePath": chartName + "/templates"}
	return vals
}

// loadFiles returns the templates (name "<chart>/templates/…" → text) and the other files (.Files).
func loadFiles(dir, chartName string) (map[string]string, files, error) {
	templates := map[string]string{}
	others := files{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			templates[chartName+"/"+rel] = string(data)
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json":
		default:
			others[rel] = data
		}
		return nil
	})
	return templates, others, err
}

func kubeMajorMinor(version string) (string, string) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return "1", "30"
	}
	return parts[0], parts[1]
}

// ---- .Files and .Capabilities.APIVersions --------------------------------------------------------

type files map[string][]byte

func (f files) Get(name string) string      { return string(f[name]) }
func (f files) GetBytes(name string) []byte { return f[name] }

func (f files) Glob(pattern string) files {
	matched := files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			matched[name] = data
		}
	}
	return matched
}

func (f files) Lines(name string) []string {
	text := string(f[name])
	if text == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

type apiVersionSet []string

func (s apiVersionSet) Has(version string) bool {
	for _, v := range s {
		if v == version {
			return true
		}
	}
	return false
}

func defaultAPIVersions() []string {
	return []string{
		"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2",
		"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1",
		"apps/v1/Deployment", "v1/Service", "v1/ConfigMap", "v1/Secret", "v1/ServiceAccount",
		"policy/v1/PodDisruptionBudget", "autoscaling/v2/HorizontalPodAutoscaler",
		"networking.k8s.io/v1/Ingress", "networking.k8s.io/v1/NetworkPolicy",
	}
}

// ---- functions ---------------------------------------------------------------------------------

func funcMap(t *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")

	includedNames := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if includedNames[name] > recursionMaxNums {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		parsed, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf bytes.Buffer
		if err := parsed.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warnWrap(warn))
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warnWrap(warn))
		}
		return val, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(warnWrap(msg)) }
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

func warnWrap(warn string) string { return "HELM[" + warn + "]HELM" }

var warnRegex = regexp.MustCompile(`HELM\[([\s\S]*)\]HELM`)

func cleanupExecError(filename string, err error) error {
	var execErr template.ExecError
	if !errors.As(err, &execErr) {
		if parts := warnRegex.FindStringSubmatch(err.Error()); len(parts) >= 2 {
			return fmt.Errorf("execution error at (%s): %s", filename, parts[1])
		}
		return err
	}
	tokens := strings.SplitN(err.Error(), ": ", 3)
	if len(tokens) != 3 {
		return fmt.Errorf("execution error at (%s): %s", filename, err)
	}
	location := tokens[1]
	if parts := warnRegex.FindStringSubmatch(tokens[2]); len(parts) >= 2 {
		return fmt.Errorf("execution error at (%s): %s", location, parts[1])
	}
	return err
}

func cleanupParseError(err error) error {
	return fmt.Errorf("parse error: %s", err)
}

// toYAML marshals as Helm does (sigs.k8s.io/yaml: through JSON, then YAML with sorted keys) and
// drops the final newline.
func toYAML(v interface{}) string {
	data, err := jsonThenYAML(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func jsonThenYAML(v interface{}) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return nil, err
	}
	return yaml.Marshal(obj)
}

func fromYAML(str string) map[string]interface{} {
	m := map[string]interface{}{}
	var raw interface{}
	if err := yaml.Unmarshal([]byte(str), &raw); err != nil {
		m["Error"] = err.Error()
		return m
	}
	converted, ok := jsonish(raw).(map[string]interface{})
	if !ok && raw != nil {
		m["Error"] = "error unmarshaling JSON: not a mapping"
		return m
	}
	if converted == nil {
		return m
	}
	return converted
}

func fromYAMLArray(str string) []interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(str), &raw); err != nil {
		return []interface{}{err.Error()}
	}
	list, ok := jsonish(raw).([]interface{})
	if !ok {
		return []interface{}{"error unmarshaling JSON: not a list"}
	}
	return list
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(str string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(str), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

// ---- values ------------------------------------------------------------------------------------

// loadValues coalesces the -f files (merged in order) with the chart's values.yaml.
func loadValues(dir string, valueFiles []string) (map[string]interface{}, error) {
	defaults := map[string]interface{}{}
	if _, err := os.Stat(filepath.Join(dir, "values.yaml")); err == nil {
		if defaults, err = readYAMLMap(filepath.Join(dir, "values.yaml")); err != nil {
			return nil, fmt.Errorf("values.yaml: %w", err)
		}
	}
	user := map[string]interface{}{}
	for _, file := range valueFiles {
		values, err := readYAMLMap(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		user = mergeMaps(user, values)
	}
	return coalesce(user, defaults), nil
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := jsonish(raw).(map[string]interface{})
	if !ok {
		return nil, errors.New("expected a mapping at the top level")
	}
	return m, nil
}

// jsonish converts what yaml.v2 decodes into what Helm sees after its YAML → JSON round trip:
// string-keyed maps and float64 numbers.
func jsonish(v interface{}) interface{} {
	switch x := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, val := range x {
			m[fmt.Sprint(k)] = jsonish(val)
		}
		return m
	case map[string]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, val := range x {
			m[k] = jsonish(val)
		}
		return m
	case []interface{}:
		l := make([]interface{}, len(x))
		for i, val := range x {
			l[i] = jsonish(val)
		}
		return l
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float32:
		return float64(x)
	default:
		return v
	}
}

// mergeMaps merges -f files as Helm does: later wins, maps merge deeply.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if om, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(om, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce lays the user's values over the chart's defaults: maps merge deeply, anything else
// replaces, and a user's null removes the default key.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(defaults))
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		if um, ok := v.(map[string]interface{}); ok {
			if dm, ok := out[k].(map[string]interface{}); ok {
				out[k] = coalesce(um, dm)
				continue
			}
		}
		out[k] = v
	}
	return out
}
