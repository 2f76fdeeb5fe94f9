{{/*
Chart name (nameOverride wins).
*/}}
{{- define "plainsight.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release name + chart name, unless the release name already
contains the chart name. Truncated to 63 characters (DNS label limit); components append
"-agent" / "-aggregator", so keep release names short.
*/}}
{{- define "plainsight.fullname" -}}
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

{{- define "plainsight.agent.fullname" -}}
{{- printf "%s-agent" (include "plainsight.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "plainsight.aggregator.fullname" -}}
{{- printf "%s-aggregator" (include "plainsight.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "plainsight.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "plainsight.labels" -}}
helm.sh/chart: {{ include "plainsight.chart" . }}
{{ include "plainsight.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: plainsight
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (immutable: never add to them in an upgrade).
*/}}
{{- define "plainsight.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plainsight.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "plainsight.agent.selectorLabels" -}}
{{ include "plainsight.selectorLabels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "plainsight.aggregator.selectorLabels" -}}
{{ include "plainsight.selectorLabels" . }}
app.kubernetes.io/component: aggregator
{{- end }}

{{/*
ServiceAccount of the agent.
*/}}
{{- define "plainsight.agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "plainsight.agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "plainsight.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Secrets holding tls.crt, tls.key and ca.crt (same keys whether Helm or cert-manager made them).
*/}}
{{- define "plainsight.aggregator.tlsSecret" -}}
{{- printf "%s-tls" (include "plainsight.aggregator.fullname" .) }}
{{- end }}

{{- define "plainsight.agent.tlsSecret" -}}
{{- printf "%s-tls" (include "plainsight.agent.fullname" .) }}
{{- end }}

{{- define "plainsight.queryTokenSecret" -}}
{{- default (printf "%s-query-token" (include "plainsight.fullname" .)) .Values.queryApi.token.existingSecret }}
{{- end }}

{{/*
DNS names of the aggregator Service (the server certificate's SANs).
*/}}
{{- define "plainsight.aggregator.dnsNames" -}}
{{- $svc := include "plainsight.aggregator.fullname" . }}
{{- list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson }}
{{- end }}
