package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// view is a container's environment, with paths under its mounts already on this machine,
// and the mapping of other in-container paths (those named inside files) to this machine.
type view struct {
	env map[string]string
	// mount path in the container -> folder on this machine, longest first.
	mounts []mount
	// The view was read from a pod's files on another machine than the pod's node.
	offNode bool
}

type mount struct {
	container, host string
}

// ownView is the view inside a container: this process's environment, paths as they are.
func ownView() *view {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return &view{env: env}
}

// The parts of a pod this reads.
type pod struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		Containers     []container `json:"containers"`
		InitContainers []container `json:"initContainers"`
	} `json:"spec"`
}

type container struct {
	Name string `json:"name"`
	Env  []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"env"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		SubPath   string `json:"subPath"`
	} `json:"volumeMounts"`
}

// podView is the view of container `name` of the pod in `file` (the first container when
// `name` is empty), whose volumes a kubelet wrote under `root`/<namespace>/<pod>/<volume>/.
// Only literal env values are read: Passport writes no others.
func podView(file, root, name string) (*view, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var p pod
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("reading the pod in %s: %w", file, err)
	}
	var c *container
	for _, list := range [][]container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range list {
			if c == nil && (name == "" || list[i].Name == name) {
				c = &list[i]
			}
		}
	}
	if c == nil {
		return nil, fmt.Errorf("pod %s/%s has no container %q", p.Metadata.Namespace, p.Metadata.Name, name)
	}
	v := &view{env: map[string]string{}, offNode: true}
	dir := filepath.Join(root, p.Metadata.Namespace, p.Metadata.Name)
	for _, m := range c.VolumeMounts {
		v.mounts = append(v.mounts, mount{m.MountPath, filepath.Join(dir, m.Name, m.SubPath)})
	}
	sort.SliceStable(v.mounts, func(i, j int) bool { return len(v.mounts[i].container) > len(v.mounts[j].container) })
	for _, e := range c.Env {
		v.env[e.Name] = e.Value
		if strings.HasPrefix(e.Value, "/") {
			v.env[e.Name] = v.host(e.Value)
		}
	}
	return v, nil
}

// host is where an in-container path is on this machine (itself when under no mount).
func (v *view) host(path string) string {
	for _, m := range v.mounts {
		prefix := strings.TrimRight(m.container, "/")
		if path == m.container || path == prefix {
			return m.host
		}
		if rest, ok := strings.CutPrefix(path, prefix+"/"); ok {
			return filepath.Join(m.host, rest)
		}
	}
	return path
}

// trust is what the process keeps of its own environment in place of a container's: the TLS
// roots of the machine it runs on, which are no part of the pod.
var trust = []string{"SSL_CERT_FILE", "SSL_CERT_DIR"}

// becomeProcessEnv replaces this process's environment with the view's (plus `trust`), since
// the SDKs read theirs from the process.
func (v *view) becomeProcessEnv() error {
	kept := map[string]string{}
	for _, k := range trust {
		if value, ok := os.LookupEnv(k); ok {
			kept[k] = value
		}
	}
	os.Clearenv()
	for _, set := range []map[string]string{kept, v.env} {
		for k, value := range set {
			if err := os.Setenv(k, value); err != nil {
				return fmt.Errorf("setting %s: %w", k, err)
			}
		}
	}
	return nil
}
