{{/*
The labels every Passport object carries, as in config/: no Helm-specific labels, so that the
default values render exactly the kustomize objects (Helm adds its own ownership labels and
annotations when it applies them).
*/}}
{{- define "passport.labels" -}}
app.kubernetes.io/name: passport
app.kubernetes.io/part-of: passport
{{- end }}

{{/* The operator's pods: the Deployment's, PDB's and Services' selector. */}}
{{- define "passport.selectorLabels" -}}
app.kubernetes.io/name: passport
app.kubernetes.io/component: operator
{{- end }}

{{/*
The settings of `passport run` that config/default keeps in params.env, as the ConfigMap's data.
*/}}
{{- define "passport.params" -}}
{{- $data := dict
  "PASSPORT_CLUSTER_NAME" (toString .Values.clusterName)
  "PASSPORT_RESYNC_SECONDS" (.Values.resyncSeconds | int64 | toString)
  "RUST_LOG" (toString .Values.logLevel) -}}
{{- if .Values.verifyAll }}
{{- $_ := set $data "PASSPORT_VERIFY_ALL" "true" }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/*
The ConfigMap's name, suffixed with kustomize's configMapGenerator hash of its data so that a
change of settings renames it and rolls the pods (envFrom is read at start), exactly as
`kubectl apply -k` does. kustomize's hash: sha256 of the JSON (Go's encoding, keys sorted) of
{"data", "kind": "ConfigMap", "name"}, its first 10 hex digits with 0, 1, 3, a, e replaced by
g, h, k, m, t. kustomize (v5, api/hasher) looks the name up with a path its lookup does not
split, so it always hashes an empty name; the test compares with kustomize's own output and
fails if that ever changes.
*/}}
{{- define "passport.paramsName" -}}
{{- $data := include "passport.params" . | fromYaml -}}
{{- $hash := dict "data" $data "kind" "ConfigMap" "name" "" | toJson | sha256sum | trunc 10 -}}
passport-params-{{ $hash | replace "0" "g" | replace "1" "h" | replace "3" "k" | replace "a" "m" | replace "e" "t" }}
{{- end }}

{{- define "passport.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
