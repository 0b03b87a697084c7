{{/*
Fail-fast checks that values.schema.json cannot express: they look across keys. Each failure
names the value to change. Included once, from the gateway ConfigMap, which is always rendered.
*/}}
{{- define "ragway.validate" -}}
{{- $workers := include "ragway.vllm.workers" . | fromJsonArray }}
{{- include "ragway.validate.chroma" . }}
{{- include "ragway.validate.workers" (dict "ctx" . "workers" $workers) }}
{{- include "ragway.validate.aliases" . }}
{{- include "ragway.validate.autoscaling" (dict "ctx" . "workers" $workers) }}
{{- include "ragway.validate.embedding" . }}
{{- include "ragway.validate.shutdown" . }}
{{- include "ragway.validate.rag" . }}
{{- if and (not .Values.auth.enabled) (not .Values.auth.allowAnonymous) }}
{{- fail "ragway: auth.enabled is false: anyone who reaches the gateway could use every model and delete every knowledge base. Set auth.allowAnonymous: true to accept that" }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "ragway: httpRoute.enabled needs httpRoute.parentRefs (the Gateway the route attaches to)" }}
{{- end }}
{{- end }}

{{- define "ragway.validate.chroma" -}}
{{- if and .Values.chroma.enabled .Values.chroma.externalUrl }}
{{- fail "ragway: set either chroma.enabled (deploy Chroma) or chroma.externalUrl (use an external one), not both" }}
{{- end }}
{{- end }}

{{- define "ragway.validate.workers" -}}
{{- $seen := dict }}
{{- range .workers }}
{{- if hasKey $seen .name }}
{{- fail (printf "ragway: vllm.workers has two workers named %q; names must be unique" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- $shared := or (gt (int .replicas) 1) .autoscaling.enabled }}
{{- $rwo := has "ReadWriteOnce" .hfCache.accessModes }}
{{- if and $shared $rwo (not .hfCache.existingClaim) }}
{{- fail (printf "ragway: vllm worker %q runs more than one pod but its hfCache PVC is ReadWriteOnce; set hfCache.accessModes to [ReadWriteMany] or hfCache.existingClaim" .name) }}
{{- end }}
{{- end }}
{{- $names := dict }}
{{- range include "ragway.settings.workers" .ctx | fromJsonArray }}
{{- if hasKey $names .name }}
{{- fail (printf "ragway: two gateway workers are named %q; rename the entry in gateway.extraWorkers" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- end }}
{{- if not $names }}
{{- fail "ragway: no workers: set vllm.workers, embedding.enabled or gateway.extraWorkers" }}
{{- end }}
{{- end }}

{{/* Alias targets must be served by some worker, unless a worker leaves its models to discovery. */}}
{{- define "ragway.validate.aliases" -}}
{{- $served := list }}
{{- $complete := true }}
{{- range include "ragway.settings.workers" . | fromJsonArray }}
{{- if .models }}
{{- $served = concat $served .models }}
{{- else }}
{{- $complete = false }}
{{- end }}
{{- end }}
{{- if $complete }}
{{- range $public, $target := .Values.gateway.config.aliases }}
{{- if not (has $target $served) }}
{{- fail (printf "ragway: gateway.config.aliases.%s points at %q, which no worker serves (served: %s)" $public $target (join ", " $served)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ragway.validate.autoscaling" -}}
{{- if and (include "ragway.keda.needed" .ctx) (not .ctx.Values.keda.prometheusServerAddress) }}
{{- fail "ragway: KEDA autoscaling is on but keda.prometheusServerAddress is empty" }}
{{- end }}
{{- $a := .ctx.Values.gateway.autoscaling }}
{{- if and (ne $a.mode "none") (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail "ragway: gateway.autoscaling.minReplicas is above maxReplicas" }}
{{- end }}
{{- range .workers }}
{{- if and .autoscaling.enabled (gt (int .autoscaling.minReplicas) (int .autoscaling.maxReplicas)) }}
{{- fail (printf "ragway: vllm worker %q: autoscaling.minReplicas is above maxReplicas" .name) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ragway.validate.embedding" -}}
{{- $e := .Values.embedding }}
{{- if and $e.enabled (eq $e.model.source "pvc") }}
{{- if not $e.model.pvc.claimName }}
{{- fail "ragway: embedding.model.source is pvc but embedding.model.pvc.claimName is empty" }}
{{- end }}
{{- if not (hasPrefix "/models/" $e.model.path) }}
{{- fail "ragway: with embedding.model.source pvc, embedding.model.path must be under /models/ (where the claim is mounted)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod must outlive the preStop sleep, the drain's grace and the exit, or the kubelet's
SIGKILL cuts the streams the drain was keeping alive. */}}
{{- define "ragway.validate.shutdown" -}}
{{- $g := .Values.gateway }}
{{- $grace := (($g.config).shutdown).grace | default 25.0 | float64 }}
{{- $needed := addf (float64 $g.preStopSleepSeconds) $grace 2.0 }}
{{- if ge $needed (float64 $g.terminationGracePeriodSeconds) }}
{{- fail (printf "ragway: gateway.preStopSleepSeconds (%v) + gateway.config.shutdown.grace (%v) + 2 s to exit must stay below gateway.terminationGracePeriodSeconds (%v); lower the grace or raise the period" $g.preStopSleepSeconds $grace $g.terminationGracePeriodSeconds) }}
{{- end }}
{{- end }}

{{/* Without a Chroma server the gateway keeps knowledge bases in an embedded Chroma on its own
disk: each replica its own, and none at all on a read-only root filesystem (every
knowledge-base call would answer 503, and RAG chat would silently answer without context). */}}
{{- define "ragway.validate.rag" -}}
{{- $url := or (((.Values.gateway.config).rag).chroma_url) (include "ragway.chroma.url" .) }}
{{- if not $url }}
{{- $g := .Values.gateway }}
{{- $replicas := int $g.replicaCount }}
{{- if ne $g.autoscaling.mode "none" }}
{{- $replicas = int $g.autoscaling.maxReplicas }}
{{- end }}
{{- if gt $replicas 1 }}
{{- fail (printf "ragway: no Chroma server for knowledge bases (chroma.enabled is false, chroma.externalUrl and gateway.config.rag.chroma_url are empty): the gateway would fall back to an embedded Chroma, one per replica, and %d replicas would each keep different knowledge bases; set chroma.enabled or chroma.externalUrl" $replicas) }}
{{- end }}
{{- if .Values.securityContext.readOnlyRootFilesystem }}
{{- fail "ragway: no Chroma server for knowledge bases (chroma.enabled is false, chroma.externalUrl and gateway.config.rag.chroma_url are empty): the gateway would fall back to an embedded Chroma, which cannot write on a read-only root filesystem; set chroma.enabled or chroma.externalUrl" }}
{{- end }}
{{- end }}
{{- end }}
