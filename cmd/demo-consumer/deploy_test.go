package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDeploymentManifestListensWhereTheProbesLook reads the example
// Deployment (deploy/kubernetes/deployment.yaml), which runs this demo, and
// checks that its container args are valid demo flags that listen on every
// interface (the kubelet probes the pod's IP, never its loopback) on the
// port each probe names.
func TestDeploymentManifestListensWhereTheProbesLook(t *testing.T) {
	src, err := os.ReadFile("../../deploy/kubernetes/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parseYAML(string(src))
	if err != nil {
		t.Fatalf("deployment.yaml: %v", err)
	}
	containers, _ := dig(doc, "spec", "template", "spec", "containers").([]any)
	if len(containers) == 0 {
		t.Fatal("deployment.yaml: no containers")
	}
	for _, c := range containers {
		c, _ := c.(map[string]any)
		name, _ := c["name"].(string)
		// The environment as the container sees it; values from secrets or
		// the downward API are stand-ins.
		env := map[string]string{}
		for _, e := range asList(c["env"]) {
			e, _ := e.(map[string]any)
			k, _ := e["name"].(string)
			v, ok := e["value"].(string)
			if !ok {
				v = "from-cluster-" + k
			}
			env[k] = v
		}
		var args []string
		for _, a := range asList(c["args"]) {
			s, _ := a.(string)
			// Kubernetes expands $(VAR) in args from the container's env.
			args = append(args, regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(s, func(m string) string {
				if v, ok := env[m[2:len(m)-1]]; ok {
					return v
				}
				return m
			}))
		}
		env["REDIS_URL"], env["DATABASE_URL"] = "", "" // parseConfig only keeps them
		cfg, err := parseConfig(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
		if err != nil {
			t.Fatalf("container %s: args %q: %v", name, args, err)
		}
		host, port, err := net.SplitHostPort(cfg.listen)
		if err != nil {
			t.Fatalf("container %s: listen address %q: %v", name, cfg.listen, err)
		}
		if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
			t.Errorf("container %s listens on %q: the kubelet probes the pod's IP, so listen on every interface (\":%s\")",
				name, cfg.listen, port)
		}
		if strings.HasPrefix(cfg.consumer, "$(") {
			t.Errorf("container %s: consumer name %q is not expanded from env", name, cfg.consumer)
		}
		ports := map[string]string{}
		for _, p := range asList(c["ports"]) {
			p, _ := p.(map[string]any)
			n, _ := p["name"].(string)
			cp, _ := p["containerPort"].(string)
			ports[n] = cp
		}
		for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
			p, ok := dig(c, probe, "httpGet", "port").(string)
			if !ok {
				t.Errorf("container %s: no %s.httpGet.port", name, probe)
				continue
			}
			if named, ok := ports[p]; ok {
				p = named
			}
			if p != port {
				t.Errorf("container %s: %s probes port %s; the demo listens on %s", name, probe, p, cfg.listen)
			}
		}
	}
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asList(v any) []any { l, _ := v.([]any); return l }

// parseYAML reads the block YAML of a Kubernetes manifest: mappings, block
// sequences (of scalars or mappings), flow sequences of scalars, quoted and
// plain scalars (all kept as strings), comments. No anchors, multi-line
// scalars or multiple documents.
func parseYAML(src string) (any, error) {
	var ls []yamlLine
	for n, raw := range strings.Split(src, "\n") {
		t := strings.TrimRight(raw, " \t\r")
		s := strings.TrimLeft(t, " ")
		if s == "" || strings.HasPrefix(s, "#") || s == "---" {
			continue
		}
		ls = append(ls, yamlLine{n: n + 1, indent: len(t) - len(s), text: s})
	}
	if len(ls) == 0 {
		return nil, nil
	}
	v, i, err := parseYAMLBlock(ls, 0)
	if err == nil && i < len(ls) {
		err = fmt.Errorf("line %d: unexpected indentation", ls[i].n)
	}
	return v, err
}

type yamlLine struct {
	n, indent int
	text      string
}

func parseYAMLBlock(ls []yamlLine, i int) (any, int, error) {
	ind := ls[i].indent
	if isYAMLItem(ls[i].text) {
		var list []any
		for i < len(ls) && ls[i].indent == ind && isYAMLItem(ls[i].text) {
			rest := strings.TrimSpace(ls[i].text[1:])
			switch {
			case rest == "":
				if i+1 >= len(ls) || ls[i+1].indent <= ind {
					list, i = append(list, nil), i+1
					continue
				}
				v, j, err := parseYAMLBlock(ls, i+1)
				if err != nil {
					return nil, 0, err
				}
				list, i = append(list, v), j
			case isYAMLKey(rest):
				// "- key: value" opens a mapping at the column after "- ".
				ls[i] = yamlLine{n: ls[i].n, indent: ind + len(ls[i].text) - len(rest), text: rest}
				v, j, err := parseYAMLBlock(ls, i)
				if err != nil {
					return nil, 0, err
				}
				list, i = append(list, v), j
			default:
				list, i = append(list, yamlScalar(rest)), i+1
			}
		}
		return list, i, nil
	}
	m := map[string]any{}
	for i < len(ls) && ls[i].indent == ind && !isYAMLItem(ls[i].text) {
		if !isYAMLKey(ls[i].text) {
			return nil, 0, fmt.Errorf("line %d: %q is not a key", ls[i].n, ls[i].text)
		}
		k, v, _ := strings.Cut(ls[i].text, ":")
		k, v = strings.Trim(k, `"'`), strings.TrimSpace(v)
		if v != "" {
			m[k], i = yamlScalar(v), i+1
			continue
		}
		if i+1 < len(ls) && (ls[i+1].indent > ind || (ls[i+1].indent == ind && isYAMLItem(ls[i+1].text))) {
			val, j, err := parseYAMLBlock(ls, i+1)
			if err != nil {
				return nil, 0, err
			}
			m[k], i = val, j
			continue
		}
		m[k], i = nil, i+1
	}
	return m, i, nil
}

func isYAMLItem(s string) bool { return s == "-" || strings.HasPrefix(s, "- ") }

// isYAMLKey reports whether s is "key: value" or "key:".
func isYAMLKey(s string) bool {
	return regexp.MustCompile(`^("[^"]*"|'[^']*'|[^\s"'\[{#][^:]*?):(\s|$)`).MatchString(s)
}

func yamlScalar(s string) any {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		var list []any
		for _, part := range strings.Split(s[1:len(s)-1], ",") {
			if part = strings.TrimSpace(part); part != "" {
				list = append(list, yamlScalar(part))
			}
		}
		return list
	}
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}
