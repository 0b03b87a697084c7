{{/*
Names, labels and the derived worker list. Every template takes its names and labels from here,
so that selectors, Services, NetworkPolicies and the gateway's settings agree.
*/}}

{{- define "ragway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name; 40 characters leave room for "-vllm-<worker>". */}}
{{- define "ragway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ragway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. Call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "ragway.labels" -}}
helm.sh/chart: {{ include "ragway.chart" .ctx }}
{{ include "ragway.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: ragway
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: immutable once a Deployment exists, so nothing here may change between releases. */}}
{{- define "ragway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ragway.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .worker }}
ragway.io/worker: {{ . }}
{{- end }}
{{- end }}

{{- define "ragway.gateway.fullname" -}}
{{- printf "%s-gateway" (include "ragway.fullname" .) }}
{{- end }}

{{- define "ragway.embedding.fullname" -}}
{{- printf "%s-embedding" (include "ragway.fullname" .) }}
{{- end }}

{{- define "ragway.chroma.fullname" -}}
{{- printf "%s-chroma" (include "ragway.fullname" .) }}
{{- end }}

{{/* Call with (dict "ctx" $ "worker" $w). */}}
{{- define "ragway.vllm.fullname" -}}
{{- printf "%s-vllm-%s" (include "ragway.fullname" .ctx) .worker.name }}
{{- end }}

{{- define "ragway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "ragway.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ragway.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "ragway.gateway.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Where the gateway reads its key file: the Secret mounted as a directory, so that a Secret
update swaps the file under the running gateway (it reloads without a restart). */}}
{{- define "ragway.keysFile" -}}
{{- printf "/etc/ragway-keys/%s" .Values.auth.keysFileKey }}
{{- end }}

{{- define "ragway.redis.fullname" -}}
{{- printf "%s-redis" (include "ragway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "true" when more than one gateway replica can run (limits must then be shared). */}}
{{- define "ragway.gateway.multi" -}}
{{- $g := .Values.gateway }}
{{- if eq $g.autoscaling.mode "none" }}
{{- if gt (int $g.replicaCount) 1 }}true{{ end }}
{{- else if gt (int $g.autoscaling.maxReplicas) 1 }}true{{ end }}
{{- end }}

{{/* "true" when the chart deploys Redis: several gateway replicas and no external URL. */}}
{{- define "ragway.redis.deployed" -}}
{{- if and (include "ragway.gateway.multi" .) (not .Values.redis.externalUrl) }}true{{ end }}
{{- end }}

{{- define "ragway.redis.url" -}}
{{- if .Values.redis.externalUrl }}
{{- .Values.redis.externalUrl }}
{{- else if include "ragway.redis.deployed" . }}
{{- printf "redis://%s.%s.svc:6379/0" (include "ragway.redis.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "ragway.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/*
Deep merge of two maps, as JSON: `src` wins, maps merge key by key, lists and scalars replace.
Unlike sprig's merge/mergeOverwrite, a false or empty value in `src` still wins, so a worker can
turn `enablePrefixCaching` off. Call with (dict "dst" (deepCopy $a) "src" $b).
*/}}
{{- define "ragway.deepMerge" -}}
{{- $dst := .dst }}
{{- range $key, $value := .src }}
{{- $current := get $dst $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $current) }}
{{- $_ := set $dst $key (include "ragway.deepMerge" (dict "dst" (deepCopy $current) "src" $value) | fromJson) }}
{{- else }}
{{- $_ := set $dst $key $value }}
{{- end }}
{{- end }}
{{- toJson $dst }}
{{- end }}

{{/*
The vLLM workers with `vllm.defaults` merged under each, as a JSON list: read it back with
`include "ragway.vllm.workers" . | fromJsonArray`.
*/}}
{{- define "ragway.vllm.workers" -}}
{{- $out := list }}
{{- range .Values.vllm.workers }}
{{- $w := include "ragway.deepMerge" (dict "dst" (deepCopy $.Values.vllm.defaults) "src" .) | fromJson }}
{{- if not $w.servedModelName }}
{{- $_ := set $w "servedModelName" $w.name }}
{{- end }}
{{- $out = append $out $w }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
The gateway's `flow` settings, as JSON, with each vLLM worker's `maxNumSeqs` as its model's
`flow.models.<servedModelName>.max_in_flight` where it differs from `flow.max_in_flight` and the
settings set none for that model (the smallest, when several workers serve one model): the
gateway never sends an engine more than it decodes at once. Nothing is added when
`max_in_flight` is 0 (no limit). Call with (dict "ctx" $ "flow" <gateway.config.flow>).
*/}}
{{- define "ragway.flow.engineLimits" -}}
{{- $flow := deepCopy .flow }}
{{- $cap := int (ternary $flow.max_in_flight 128 (hasKey $flow "max_in_flight")) }}
{{- $models := deepCopy (default dict $flow.models) }}
{{- $seqs := dict }}
{{- range include "ragway.vllm.workers" .ctx | fromJsonArray }}
{{- $least := int (default .maxNumSeqs (index $seqs .servedModelName)) }}
{{- $_ := set $seqs .servedModelName (min $least (int .maxNumSeqs)) }}
{{- end }}
{{- range $name, $n := $seqs }}
{{- $model := deepCopy (default dict (index $models $name)) }}
{{- if and $cap (ne (int $n) $cap) (not (hasKey $model "max_in_flight")) }}
{{- $_ := set $model "max_in_flight" (int $n) }}
{{- $_ := set $models $name $model }}
{{- end }}
{{- end }}
{{- if $models }}
{{- $_ := set $flow "models" $models }}
{{- end }}
{{- toJson $flow }}
{{- end }}

{{/* The worker list of the gateway's settings file, as JSON. */}}
{{- define "ragway.settings.workers" -}}
{{- $out := list }}
{{- /* In discovery mode `kubernetes` the gateway finds the vLLM workers itself. */}}
{{- if ne .Values.discovery.mode "kubernetes" }}
{{- range include "ragway.vllm.workers" . | fromJsonArray }}
{{- $url := printf "http://%s:8000" (include "ragway.vllm.fullname" (dict "ctx" $ "worker" .)) }}
{{- $out = append $out (dict "name" (printf "vllm-%s" .name) "url" $url "kind" "chat" "models" (list .servedModelName)) }}
{{- end }}
{{- end }}
{{- if .Values.embedding.enabled }}
{{- $url := printf "http://%s:8002" (include "ragway.embedding.fullname" .) }}
{{- $out = append $out (dict "name" "embedding" "url" $url "kind" "embedding" "models" (list .Values.embedding.servedModelName)) }}
{{- end }}
{{- range .Values.gateway.extraWorkers }}
{{- $out = append $out . }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Chroma's URL inside the cluster, or the external one; empty when there is none. */}}
{{- define "ragway.chroma.url" -}}
{{- if .Values.chroma.enabled }}
{{- printf "http://%s.%s.svc:8000" (include "ragway.chroma.fullname" .) .Release.Namespace }}
{{- else }}
{{- .Values.chroma.externalUrl }}
{{- end }}
{{- end }}

{{/* "true" when any component scales with KEDA. */}}
{{- define "ragway.keda.needed" -}}
{{- $need := eq .Values.gateway.autoscaling.mode "keda" }}
{{- range include "ragway.vllm.workers" . | fromJsonArray }}
{{- if .autoscaling.enabled }}{{ $need = true }}{{ end }}
{{- end }}
{{- if $need }}true{{ end }}
{{- end }}
