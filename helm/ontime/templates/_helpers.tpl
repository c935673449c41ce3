{{/* Names, labels and the pipeline facts every template shares. */}}

{{- define "ontime.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ontime.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "ontime.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "ontime.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of a stage's objects: dict "root" $ "stage" "infer" */}}
{{- define "ontime.stageName" -}}
{{- printf "%s-%s" (include "ontime.fullname" .root) .stage | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ontime.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "ontime.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ontime
{{- end -}}

{{/* Selector of one stage's pods: dict "root" $ "stage" "infer" */}}
{{- define "ontime.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ontime.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{- define "ontime.stageLabels" -}}
{{ include "ontime.labels" .root }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{/* The pipeline YAML text: values.pipeline.content, else files/pipeline.yaml. */}}
{{- define "ontime.pipelineText" -}}
{{- if .Values.pipeline.content -}}
{{- .Values.pipeline.content -}}
{{- else -}}
{{- .Files.Get "files/pipeline.yaml" -}}
{{- end -}}
{{- end -}}

{{/* Input topic of a stage from the pipeline: dict "pipeline" $p "stage" "infer" */}}
{{- define "ontime.inputTopic" -}}
{{- $inputs := dict "preprocess" "raw" "infer" "features" "postprocess" "scores" -}}
{{- index .pipeline.topics (index $inputs .stage) -}}
{{- end -}}

{{/* The stage's share of the budget in seconds, e.g. 0.05 for infer (250 ms × 0.20). */}}
{{- define "ontime.stageBudgetSeconds" -}}
{{- $stage := index .pipeline.stages .stage -}}
{{- divf (mulf (float64 .pipeline.budget_ms) (float64 $stage.budget_share)) 1000.0 -}}
{{- end -}}

{{/* keda, hpa or none, after resolving "auto" against the cluster's API groups. */}}
{{- define "ontime.autoscaler" -}}
{{- $mode := .Values.autoscaling.mode -}}
{{- if eq $mode "auto" -}}
{{- if .Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject" -}}keda{{- else -}}hpa{{- end -}}
{{- else -}}
{{- $mode -}}
{{- end -}}
{{- end -}}

{{- define "ontime.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ontime.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ontime.sasl" -}}
{{- if has .Values.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL") -}}true{{- end -}}
{{- end -}}

{{- define "ontime.tls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") -}}true{{- end -}}
{{- end -}}
