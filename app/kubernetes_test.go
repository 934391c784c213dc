package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/redisconn"
)

// kubernetesDir holds the manifests, relative to this package.
var kubernetesDir = filepath.Join("..", "deploy", "kubernetes")

// hookdImage is the image name the manifests give hookd's containers, which
// the kustomization's images entry replaces.
const hookdImage = "hookd"

// distrolessNonroot is the user and group of the distroless image's
// nonroot user, which the Dockerfile runs hookd as.
const distrolessNonroot = 65532

// secretPlaceholders stand for the values of the Secret the operator
// creates, by key; any other key gets a placeholder word.
var secretPlaceholders = map[string]string{
	"HOOKD_DATABASE_URL":  "postgres://hookd:placeholder@postgres:5432/hookd?sslmode=require",
	"HOOKD_ADMIN_API_KEY": strings.Repeat("k", 32),
	"HOOKD_SECRETS_KEY":   base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 32))),
}

// manifest is one YAML document of deploy/kubernetes.
type manifest struct {
	name   string // file#index kind/name, for messages
	json   []byte
	object any // *appsv1.Deployment, *corev1.Service, ...
}

// TestKubernetesManifests checks deploy/kubernetes: every manifest the
// kustomization lists decodes strictly into the Kubernetes API's Go types
// (unknown and duplicate fields, wrong types and malformed quantities are
// refused, as the API server refuses them) and, in Schema, passes the
// Kubernetes API's JSON schemas (required fields, formats) with the npm
// package kubernetes-models. Hookd runs each hookd container's environment
// through hookd's configuration parser and checks what hookd needs of its
// Deployments: probes where hookd serves them, resources, a grace period
// longer than the shutdown timeout, the image's non-root user with a
// read-only root, every role run, one Redis for all.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	manifests := readManifests(t)

	t.Run("Schema", func(t *testing.T) {
		t.Parallel()
		checkKubernetesSchemas(t, manifests)
	})
	t.Run("Hookd", func(t *testing.T) {
		t.Parallel()
		checkKubernetesHookd(t, manifests)
	})
}

// kustomization is the part of kustomize's Kustomization the manifests
// use, decoded strictly: a field it does not name fails the test, to be
// added here when the kustomization needs it.
type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Namespace  string           `json:"namespace"`
	Resources  []string         `json:"resources"`
	Images     []kustomizeImage `json:"images"`
}

// kustomizeImage is an entry of a Kustomization's images.
type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
}

// readManifests reads the kustomization and every document of the files
// it lists, which must be every other YAML file of the directory, each
// decoded strictly into its Go type.
func readManifests(t *testing.T) []manifest {
	t.Helper()
	var k kustomization
	b, err := os.ReadFile(filepath.Join(kubernetesDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	if !slices.ContainsFunc(k.Images, func(i kustomizeImage) bool { return i.Name == hookdImage }) {
		t.Errorf("kustomization.yaml: no images entry for %q", hookdImage)
	}
	files, err := filepath.Glob(filepath.Join(kubernetesDir, "*.y*ml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			onDisk = append(onDisk, base)
		}
	}
	if diff := cmp.Diff(onDisk, slices.Sorted(slices.Values(k.Resources))); diff != "" {
		t.Errorf("kustomization.yaml's resources are not the directory's manifests (-files +resources):\n%s", diff)
	}

	var manifests []manifest
	for _, file := range k.Resources {
		f, err := os.Open(filepath.Join(kubernetesDir, file))
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(f))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			m, err := decodeManifest(doc)
			if err != nil {
				t.Errorf("%s#%d: %v", file, i, err)
				continue
			}
			m.name = fmt.Sprintf("%s#%d %s", file, i, m.name)
			manifests = append(manifests, m)
		}
		_ = f.Close()
	}
	if len(manifests) == 0 {
		t.Fatal("no manifests")
	}
	if t.Failed() {
		t.FailNow() // the checks that follow would only repeat it
	}
	return manifests
}

// decodeManifest decodes one document into the Go type of its apiVersion
// and kind, strictly.
func decodeManifest(doc []byte) (manifest, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return manifest{}, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return manifest{}, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	default:
		return manifest{}, fmt.Errorf("%s %s: no Go type for it in this test; add one", tm.APIVersion, tm.Kind)
	}
	if err := decodeStrict(doc, obj); err != nil {
		return manifest{}, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	name := obj.(metav1.ObjectMetaAccessor).GetObjectMeta().GetName()
	if name == "" {
		return manifest{}, fmt.Errorf("%s %s without metadata.name", tm.APIVersion, tm.Kind)
	}
	name = tm.Kind + "/" + name
	return manifest{name: name, json: j, object: obj}, nil
}

// decodeStrict decodes YAML into v as the API server decodes a request
// body: field names match case-sensitively, and an unknown or duplicate
// field is an error.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// checkKubernetesSchemas validates every manifest with deploy/kubeschema.js
// and kubernetes-models, along with an invalid Deployment that must fail:
// a validator that accepts everything would otherwise pass unnoticed.
func checkKubernetesSchemas(t *testing.T, manifests []manifest) {
	dir := kubeSchema(t)
	type entry struct {
		Name   string          `json:"name"`
		Object json.RawMessage `json:"object"`
	}
	const canary = "an invalid Deployment (no container name, a port as a string)"
	input := []entry{{Name: canary, Object: json.RawMessage(`{"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": {"name": "x"}, "spec": {"selector": {}, "template": {"spec": {"containers": [{"image": "x", "ports": [{"containerPort": "80"}]}]}}}}`)}}
	for _, m := range manifests {
		input = append(input, entry{Name: m.name, Object: m.json})
	}
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", filepath.Join("..", "deploy", "kubeschema.js"), dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("deploy/kubeschema.js: %v\n%s", err, stderr.String())
	}
	var results []struct {
		Name   string   `json:"name"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		t.Fatalf("deploy/kubeschema.js output: %v\n%s", err, stdout.String())
	}
	if len(results) != len(input) {
		t.Fatalf("deploy/kubeschema.js answered %d objects of %d", len(results), len(input))
	}
	if len(results[0].Errors) < 2 {
		t.Errorf("the validator found %q in %s: it does not validate", results[0].Errors, canary)
	}
	for _, r := range results[1:] {
		for _, e := range r.Errors {
			t.Errorf("%s: %s", r.Name, e)
		}
	}
	t.Logf("validated %d manifests against the Kubernetes API's schemas", len(results)-1)
}

// kubeSchema returns the install directory of kubernetes-models, installed
// by deploy/kubeschema.sh when missing. Where it cannot be installed it
// skips the test, unless CI is set: there it fails.
func kubeSchema(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the schema validator is not installed")
	}
	return testTool(t, "kubeschema.sh", "the Kubernetes schema validator", true)
}

// checkKubernetesHookd checks what hookd needs of its manifests.
func checkKubernetesHookd(t *testing.T, manifests []manifest) {
	configMaps := map[string]*corev1.ConfigMap{}
	var (
		deployments []*appsv1.Deployment
		services    []*corev1.Service
		budgets     []*policyv1.PodDisruptionBudget
	)
	for _, m := range manifests {
		switch o := m.object.(type) {
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
		case *appsv1.Deployment:
			deployments = append(deployments, o)
		case *corev1.Service:
			services = append(services, o)
		case *policyv1.PodDisruptionBudget:
			budgets = append(budgets, o)
		}
	}

	var (
		roles []string
		first *app.Config
		found bool
	)
	for _, d := range deployments {
		where := "Deployment " + d.Name
		pod := d.Spec.Template.Spec
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not select its pods (labels %v): %v", where, d.Spec.Selector, d.Spec.Template.Labels, err)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token, which hookd never uses", where)
		}
		for _, c := range pod.Containers {
			if c.Image != hookdImage {
				t.Errorf("%s: container %s runs image %q, not %q (which the kustomization sets)", where, c.Name, c.Image, hookdImage)
				continue
			}
			found = true
			cfg, ok := checkHookdContainer(t, where+" container "+c.Name, pod, c, configMaps)
			if !ok {
				continue
			}
			roles = append(roles, cfg.Roles...)
			if got := cfg.Redis.Mode(); got != redisconn.Sentinel {
				t.Errorf("%s: Redis mode %s, want sentinel", where, got)
			}
			if first == nil {
				first = &cfg
				continue
			}
			if diff := cmp.Diff(first.Redis, cfg.Redis); diff != "" {
				t.Errorf("%s: a Redis other than the other Deployments' (-theirs +its):\n%s", where, diff)
			}
			if cfg.Queue.Shards != first.Queue.Shards {
				t.Errorf("%s: HOOKD_QUEUE_SHARDS %d, the others %d: every process must use the same count", where, cfg.Queue.Shards, first.Queue.Shards)
			}
		}
	}
	if !found {
		t.Fatal("no Deployment runs hookd")
	}
	for _, r := range app.AllRoles() {
		if !slices.Contains(roles, r) {
			t.Errorf("no Deployment runs the %s role", r)
		}
	}

	// Each Service and PodDisruptionBudget selects hookd pods; a Service's
	// target port is one of every pod it selects.
	selected := func(where string, sel labels.Selector) []*appsv1.Deployment {
		var ds []*appsv1.Deployment
		for _, d := range deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				ds = append(ds, d)
			}
		}
		if sel.Empty() || len(ds) == 0 {
			t.Errorf("%s: selects no Deployment's pods", where)
		}
		return ds
	}
	for _, s := range services {
		where := "Service " + s.Name
		for _, d := range selected(where, labels.SelectorFromSet(s.Spec.Selector)) {
			for _, p := range s.Spec.Ports {
				if _, err := containerPort(d.Spec.Template.Spec.Containers[0], p.TargetPort); err != nil {
					t.Errorf("%s: port %s targets %s in Deployment %s: %v", where, p.Name, p.TargetPort.String(), d.Name, err)
				}
			}
		}
	}
	for _, b := range budgets {
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err != nil {
			t.Errorf("PodDisruptionBudget %s: %v", b.Name, err)
			continue
		}
		selected("PodDisruptionBudget "+b.Name, sel)
	}
}

// checkHookdContainer checks one hookd container of pod and returns its
// configuration, as hookd parses it from the container's environment.
func checkHookdContainer(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, configMaps map[string]*corev1.ConfigMap) (app.Config, bool) {
	t.Helper()
	if len(c.Command) > 0 || len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("%s: command %q args %q, want the image's entrypoint with args serve", where, c.Command, c.Args)
		return app.Config{}, false
	}
	env, ok := containerEnv(t, where, c, configMaps)
	if !ok {
		return app.Config{}, false
	}
	cfg, ok := deployedConfig(t, where, env, c.Args[1:]...)
	if !ok {
		return app.Config{}, false
	}

	// Probes: where hookd serves them, the api's address for the api,
	// the metrics address otherwise.
	addr, listener := cfg.MetricsAddr, "HOOKD_METRICS_ADDR"
	if slices.Contains(cfg.Roles, app.RoleAPI) {
		addr, listener = cfg.HTTPAddr, "HOOKD_HTTP_ADDR"
		if cfg.AdminAPIKey == "" {
			t.Errorf("%s: the api without HOOKD_ADMIN_API_KEY refuses every /v1 request", where)
		}
	}
	_, listenPort, err := net.SplitHostPort(addr)
	if err != nil || addr == "" {
		t.Errorf("%s: %s %q: no port to probe", where, listener, addr)
	}
	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
		required   bool
	}{
		{"readiness", "/readyz", c.ReadinessProbe, true},
		{"liveness", "/healthz", c.LivenessProbe, true},
		{"startup", "/healthz", c.StartupProbe, false},
	} {
		if p.probe == nil {
			if p.required {
				t.Errorf("%s: no %s probe", where, p.kind)
			}
			continue
		}
		get := p.probe.HTTPGet
		if get == nil || get.Path != p.path {
			t.Errorf("%s: %s probe %+v, want GET %s", where, p.kind, p.probe.ProbeHandler, p.path)
			continue
		}
		port, err := containerPort(c, get.Port)
		if err != nil {
			t.Errorf("%s: %s probe port %s: %v", where, p.kind, get.Port.String(), err)
		} else if strconv.Itoa(int(port)) != listenPort {
			t.Errorf("%s: %s probe on port %d, but hookd serves it on %s (%s)", where, p.kind, port, addr, listener)
		}
		// /readyz gives its checks 2s; Kubernetes' default timeout is 1s.
		if p.kind == "readiness" && p.probe.TimeoutSeconds < 3 {
			t.Errorf("%s: readiness probe timeoutSeconds %d, want 3 or more: /readyz may take 2s", where, p.probe.TimeoutSeconds)
		}
	}

	// Resources: requests for the scheduler, limits for the node.
	res := c.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := res.Requests[name]
		limit, hasLimit := res.Limits[name]
		if !hasReq || req.IsZero() || !hasLimit || limit.IsZero() {
			t.Errorf("%s: %s request %v and limit %v, want both", where, name, res.Requests[name], res.Limits[name])
		} else if req.Cmp(limit) > 0 {
			t.Errorf("%s: %s request %s over its limit %s", where, name, req.String(), limit.String())
		}
	}

	// Graceful shutdown: hookd must finish before Kubernetes kills it.
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if c.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("%s: a preStop hook other than sleep (the image has no shell)", where)
		} else {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
	}
	if pod.TerminationGracePeriodSeconds == nil {
		t.Errorf("%s: no terminationGracePeriodSeconds (Kubernetes' default is 30s)", where)
	} else if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= preStop+cfg.ShutdownTimeout {
		t.Errorf("%s: terminationGracePeriodSeconds %s, not longer than the preStop pause %s and HOOKD_SHUTDOWN_TIMEOUT %s", where, grace, preStop, cfg.ShutdownTimeout)
	}

	// The distroless image's non-root user, with nothing to write.
	user := func(pod *corev1.PodSecurityContext, c *corev1.SecurityContext) (nonRoot *bool, uid, gid *int64) {
		if pod != nil {
			nonRoot, uid, gid = pod.RunAsNonRoot, pod.RunAsUser, pod.RunAsGroup
		}
		if c != nil {
			nonRoot, uid, gid = firstSet(c.RunAsNonRoot, nonRoot), firstSet(c.RunAsUser, uid), firstSet(c.RunAsGroup, gid)
		}
		return nonRoot, uid, gid
	}
	nonRoot, uid, gid := user(pod.SecurityContext, c.SecurityContext)
	if nonRoot == nil || !*nonRoot || uid == nil || *uid != distrolessNonroot || gid == nil || *gid != distrolessNonroot {
		t.Errorf("%s: want runAsNonRoot as user and group %d, the image's nonroot", where, distrolessNonroot)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: want readOnlyRootFilesystem, no privilege escalation and every capability dropped", where)
	}
	return cfg, true
}

// firstSet returns the first of its pointers that is not nil.
func firstSet[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// containerEnv returns the environment of c as Kubernetes builds it:
// envFrom in order, then env over it. Values from the Secret get
// placeholders; a source whose value the test cannot know fails it.
func containerEnv(t *testing.T, where string, c corev1.Container, configMaps map[string]*corev1.ConfigMap) (map[string]string, bool) {
	t.Helper()
	env, ok := map[string]string{}, true
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := configMaps[from.ConfigMapRef.Name]
			if cm == nil {
				t.Errorf("%s: envFrom ConfigMap %s, which the manifests do not hold", where, from.ConfigMapRef.Name)
				ok = false
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		default:
			t.Errorf("%s: envFrom %+v: name each variable from a Secret with secretKeyRef, so that the test knows them", where, from)
			ok = false
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != "hookd" || ref.Key != e.Name {
				t.Errorf("%s: %s from Secret %s key %s, want the Secret hookd's key of the same name, as the README documents", where, e.Name, ref.Name, ref.Key)
			}
			v, found := secretPlaceholders[e.Name]
			if !found {
				v = "placeholder"
			}
			env[e.Name] = v
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := configMaps[ref.Name]
			v, found := "", false
			if cm != nil {
				v, found = cm.Data[ref.Key]
			}
			if !found && (ref.Optional == nil || !*ref.Optional) {
				t.Errorf("%s: %s from ConfigMap %s key %s, which the manifests do not hold", where, e.Name, ref.Name, ref.Key)
				ok = false
			}
			if found {
				env[e.Name] = v
			}
		default:
			t.Errorf("%s: %s from %+v: a source the test cannot read", where, e.Name, e.ValueFrom)
			ok = false
		}
	}
	return env, ok
}

// containerPort resolves a port of c, by number or by name, to its
// number, which c must declare.
func containerPort(c corev1.Container, port intstr.IntOrString) (int32, error) {
	for _, p := range c.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return p.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("container %s declares no such port", c.Name)
}
