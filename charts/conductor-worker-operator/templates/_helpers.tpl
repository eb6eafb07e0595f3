{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "cwo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "cwo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cwo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Immutable selector labels of the operator's pods. */}}
{{- define "cwo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cwo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Standard labels of every object of the chart. */}}
{{- define "cwo.labels" -}}
helm.sh/chart: {{ include "cwo.chart" . }}
app.kubernetes.io/name: {{ include "cwo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conductor-worker-operator
{{- end }}

{{- define "cwo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cwo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cwo.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "cwo.workerImage" -}}
{{- printf "%s:%s" .Values.workerImage.repository (.Values.workerImage.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The namespaces the operator watches, comma-separated ("" = all): watchNamespaces, or with
rbac.scope=namespaced and none listed, the release's own namespace. */}}
{{- define "cwo.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- join "," .Values.watchNamespaces }}
{{- else if eq .Values.rbac.scope "namespaced" }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Cross-field checks the schema cannot express clearly. */}}
{{- define "cwo.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) }}
{{- fail "replicaCount > 1 needs peering.enabled=true: without kopf peering every replica would act" }}
{{- end }}
{{- end }}

{{/*
A CRD from files/crds/ (verbatim copies of crds/, see charts/sync-crd.sh): metadata rendered here
(chart labels, keep policy), everything from `spec:` on copied as it is.
Args: dict "root" $ "text" <one YAML document>.
*/}}
{{- define "cwo.crd" -}}
{{- $root := .root }}
{{- $doc := .text | fromYaml }}
{{- $labels := merge (include "cwo.labels" $root | fromYaml) ($doc.metadata.labels | default dict) }}
apiVersion: {{ $doc.apiVersion }}
kind: {{ $doc.kind }}
metadata:
  name: {{ $doc.metadata.name }}
  labels:
    {{- toYaml $labels | nindent 4 }}
  {{- if $root.Values.crds.keep }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
{{ regexFind "(?ms)^spec:.*" .text | trimSuffix "\n" }}
{{- end }}

{{/* RBAC rules on ConductorWorkers and their children, granted per watched namespace (or cluster-wide). */}}
{{- define "cwo.workloadRules" -}}
# Only the verbs the operator uses, as the API server's audit log of the end-to-end test shows them
# (test_e2e_demo.py compares): kopf and the operator write with PATCH, read with list and watch, and GET
# only a Deployment its watch has not seen yet, a ConductorConnection and a Secret.
# ConductorWorkers: watched by kopf, patched for its finalizer and progress annotations.
- apiGroups: ["conductor.io"]
  resources: ["conductorworkers"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["conductor.io"]
  resources: ["conductorworkers/status"]
  verbs: ["patch"]
# ConductorConnections: watched (a change wakes the workers naming one), their Ready condition written.
- apiGroups: ["conductor.io"]
  resources: ["conductorconnections"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["conductor.io"]
  resources: ["conductorconnections/status"]
  verbs: ["patch"]
# The children's ownerReferences set blockOwnerDeletion; with the OwnerReferencesPermissionEnforcement
# admission plugin the API server then requires update on the owner's finalizers.
- apiGroups: ["conductor.io"]
  resources: ["conductorworkers/finalizers"]
  verbs: ["update"]
# The children, applied server-side (an apply that creates needs create too). A Deployment is never
# deleted by the operator: the garbage collector removes it with its ConductorWorker.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["create", "patch", "delete"]
# Worker pods: their IPs to scrape /metrics; patch sets the pod-deletion-cost of idle pods on scale-down.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# Only the Secret a ConductorConnection names: to check it exists and to call that connection's server.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on ConductorWorkers (the operator's and kopf's, both core/v1, created and never updated).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* RBAC rules kopf needs cluster-wide whatever the scope. */}}
{{- define "cwo.clusterRules" -}}
# kopf discovers and watches CRDs; the operator checks whether the ServiceMonitor CRD is served.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if include "cwo.watchNamespaces" . }}
# kopf, when it watches a list of namespaces, lists and watches Namespaces to follow them.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
