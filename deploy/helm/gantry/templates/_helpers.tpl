{{/* The chart's name, or nameOverride. */}}
{{- define "gantry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object, "gantry" for a release named gantry (as the
kustomize base in deploy/manifests names them), else <release>-gantry.
*/}}
{{- define "gantry.fullname" -}}
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

{{- define "gantry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release. */}}
{{- define "gantry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gantry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gantry.labels" -}}
{{ include "gantry.selectorLabels" . }}
helm.sh/chart: {{ include "gantry.chart" . }}
app.kubernetes.io/version: {{ include "gantry.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gantry.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "gantry.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "gantry.tag" .) }}
{{- end }}
{{- end }}

{{- define "gantry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gantry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required with serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The rules file: the config value as YAML, or verbatim if a string. */}}
{{- define "gantry.config" -}}
{{- if kindIs "string" .Values.config }}
{{- .Values.config }}
{{- else }}
{{- toYaml .Values.config }}
{{- end }}
{{- end }}

{{/* The cert-manager Certificate that issues the serving certificate. */}}
{{- define "gantry.servingCertName" -}}
{{- printf "%s-serving-cert" (include "gantry.fullname" .) }}
{{- end }}

{{/*
The Secret holding the serving certificate, or "" when Gantry writes a
self-signed one.
*/}}
{{- define "gantry.tlsSecret" -}}
{{- if .Values.certManager.enabled }}
{{- include "gantry.servingCertName" . }}
{{- else }}
{{- .Values.tls.secretName }}
{{- end }}
{{- end }}

{{/*
The APIServices to register, one "version group" pair per line, from
apiServices' switches.
*/}}
{{- define "gantry.apiServices" -}}
{{- if .Values.apiServices.customMetrics }}
v1beta1 custom.metrics.k8s.io
v1beta2 custom.metrics.k8s.io
{{- end }}
{{- if .Values.apiServices.externalMetrics }}
v1beta1 external.metrics.k8s.io
{{- end }}
{{- if .Values.apiServices.resourceMetrics }}
v1beta1 metrics.k8s.io
{{- end }}
{{- end }}

{{/* Where the Prometheus credentials are mounted. */}}
{{- define "gantry.prometheusAuthDir" -}}
/etc/prometheus-auth
{{- end }}

{{/*
Where backendSecrets are mounted, one directory per Secret. Inside the
config volume's directory: the kubelet makes the mount points of volumes
nested in a ConfigMap volume itself.
*/}}
{{- define "gantry.backendsDir" -}}
/etc/gantry/backends
{{- end }}

{{/*
An APIService for a group-version served by Gantry; the argument is
(list $ version group).
*/}}
{{- define "gantry.apiService" -}}
{{- $ := index . 0 }}
{{- $version := index . 1 }}
{{- $group := index . 2 -}}
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: {{ $version }}.{{ $group }}
  labels:
    {{- include "gantry.labels" $ | nindent 4 }}
  {{- if $.Values.certManager.enabled }}
  annotations:
    cert-manager.io/inject-ca-from: {{ $.Release.Namespace }}/{{ include "gantry.servingCertName" $ }}
  {{- end }}
spec:
  group: {{ $group }}
  version: {{ $version }}
  groupPriorityMinimum: {{ $.Values.apiServices.groupPriorityMinimum }}
  {{- /* custom.metrics.k8s.io/v1beta2 is preferred over v1beta1. */}}
  versionPriority: {{ if eq $version "v1beta2" }}200{{ else }}100{{ end }}
  service:
    name: {{ include "gantry.fullname" $ }}
    namespace: {{ $.Release.Namespace }}
    port: {{ $.Values.service.port }}
  {{- if $.Values.certManager.enabled }}
  {{- /* the cainjector fills in caBundle */}}
  {{- else if $.Values.apiServices.caBundle }}
  caBundle: {{ $.Values.apiServices.caBundle | b64enc }}
  {{- else if $.Values.apiServices.insecureSkipTLSVerify }}
  insecureSkipTLSVerify: true
  {{- end }}
{{- end }}
