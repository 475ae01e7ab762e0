{{/* The namespace of the commons' services: fence-service, arborist-service, revproxy. */}}
{{- define "hatchway.commonsNamespace" -}}
{{- default .Release.Namespace .Values.commonsNamespace -}}
{{- end }}

{{/* The users' namespace: hatchery's default name, jupyter-pods-<release namespace>. */}}
{{- define "hatchway.userNamespace" -}}
{{- default (printf "jupyter-pods-%s" .Release.Namespace) .Values.userNamespace.name -}}
{{- end }}

{{/* A commons service's full DNS name: <name>.<commons namespace>.svc.<cluster domain>. */}}
{{- define "hatchway.serviceHost" -}}
{{- printf "%s.%s.svc.%s" .name (include "hatchway.commonsNamespace" .root) .root.Values.clusterDomain -}}
{{- end }}

{{- define "hatchway.fenceUrl" -}}
{{- default (printf "http://%s/" (include "hatchway.serviceHost" (dict "name" "fence-service" "root" .))) .Values.fence.url -}}
{{- end }}

{{- define "hatchway.arboristUrl" -}}
{{- default (printf "http://%s" (include "hatchway.serviceHost" (dict "name" "arborist-service" "root" .))) .Values.arborist.url -}}
{{- end }}

{{/* The labels that pick hatchway's pods (Deployment, Services, PDB, NetworkPolicies). */}}
{{- define "hatchway.selectorLabels" -}}
app.kubernetes.io/name: hatchway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hatchway.labels" -}}
{{ include "hatchway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "hatchway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{/* Container ports. */}}
{{- define "hatchway.httpPort" -}}8080{{- end }}
{{- define "hatchway.ambassadorPort" -}}8081{{- end }}

{{/* Mount points: hatchway's settings, and hatchery.json where Hatchery reads it. */}}
{{- define "hatchway.settingsPath" -}}/etc/hatchway/hatchway.yaml{{- end }}
{{- define "hatchway.hatcheryPath" -}}/var/hatchery/hatchery.json{{- end }}
{{- define "hatchway.envoyDir" -}}/var/run/hatchway-envoy{{- end }}

{{/* The ConfigMap holding hatchery.json (key json): an existing one, or the one rendered. */}}
{{- define "hatchway.hatcheryConfigMap" -}}
{{- default .Values.hatcheryConfig.name .Values.hatcheryConfig.existingConfigMap -}}
{{- end }}

{{/* hatchery.json as hatchery's chart writes it into manifest-hatchery (key json). */}}
{{- define "hatchway.hatcheryJson" -}}
{{- if .Values.hatchery.json -}}
{{ .Values.hatchery.json }}
{{- else -}}
{
  "user-namespace": {{ include "hatchway.userNamespace" . | toJson }},
  "skip-node-selector": {{ or .Values.global.dev .Values.hatchery.skipNodeSelector | toJson }},
  "use-internal-services-url": {{ or .Values.global.dev .Values.hatchery.useInternalServicesUrl | toJson }},
  "sub-dir": "/lw-workspace",
  "user-volume-size": "10Gi",
  "sidecar": {{ tpl (.Values.hatchery.sidecarContainer | toJson) . }},
  "containers": {{ tpl (.Values.hatchery.containers | toJson) . }},
  "shared-workspace": {
    "enabled": {{ .Values.hatchery.sharedWorkspaceEnabled | toJson }},
    "oidc-provider-arn": {{ .Values.hatchery.oidcProviderArn | toJson }}
  }
}
{{- end -}}
{{- end }}

{{/* hatchway's settings (hatchway.yaml): everything an operator used to edit by hand is
     derived from the values; `settings` is merged over it. */}}
{{- define "hatchway.settings" -}}
{{- $host := .Values.global.hostname -}}
{{- $fence := include "hatchway.fenceUrl" . -}}
{{- $s := dict
  "host" "0.0.0.0"
  "port" (include "hatchway.httpPort" . | int)
  "backend" "kubernetes"
  "mode" .Values.mode
  "prefix" "/lw-workspace"
  "public_url" (printf "https://%s" $host)
  "state_dir" "/var/lib/hatchway"
  "sessions" (dict
    "mode" "jwks"
    "jwks_url" (printf "%s.well-known/jwks" (trimSuffix "/" $fence | printf "%s/"))
    "issuer" (printf "https://%s/user" $host)
    "login_url" (printf "https://%s/login" $host))
  "authz" (dict "mode" "arborist" "arborist_url" (include "hatchway.arboristUrl" .))
  "kubernetes" (dict
    "namespace" (include "hatchway.userNamespace" .)
    "route_to" "endpoints"
    "cluster_domain" .Values.clusterDomain
    "dropin_ambassador" .Values.adoptHatcheryWorkspaces
    "gen3_endpoint" $host
    "fence_url" $fence
    "default_idle_seconds" (.Values.hatchery.reaper.idleTimeoutSeconds | int))
  "trusted_proxies" .Values.trustedProxies
  "ambassador_port" (include "hatchway.ambassadorPort" . | int)
  "log_format" "json"
  "drain" (dict
    "delay_seconds" .Values.drain.delaySeconds
    "websocket_grace_seconds" .Values.drain.websocketGraceSeconds
    "timeout_seconds" .Values.drain.timeoutSeconds)
-}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $s "metrics_port" (.Values.metrics.port | int) -}}
{{- $_ := set $s "metrics_host" "0.0.0.0" -}}
{{- end -}}
{{- if eq .Values.mode "envoy" -}}
{{- $_ := set $s "envoy" (dict
  "listen_host" "0.0.0.0"
  "listen_port" (.Values.envoy.port | int)
  "admin_host" "127.0.0.1"
  "admin_port" 9901
  "dynamic_dir" (include "hatchway.envoyDir" .)
  "hatchway_host" "127.0.0.1"
  "hatchway_port" (include "hatchway.httpPort" . | int)
  "authorization" .Values.envoy.authorization) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $s (deepCopy .Values.settings)) -}}
{{- end }}

{{/* The IRSA role: roleArn, else hatchery's from global.aws. */}}
{{- define "hatchway.roleArn" -}}
{{- if .Values.serviceAccount.roleArn -}}
{{ .Values.serviceAccount.roleArn }}
{{- else if and .Values.global.aws.enabled .Values.global.aws.account .Values.global.aws.hatchery_role -}}
{{ printf "arn:aws:iam::%v:role/%s" .Values.global.aws.account .Values.global.aws.hatchery_role }}
{{- end -}}
{{- end }}

{{/* Refuse what would be unsafe or would not start, with the value to change. */}}
{{- define "hatchway.checks" -}}
{{- if not (has .Values.mode (list "builtin" "envoy")) -}}
{{- fail (printf "hatchway: mode must be builtin or envoy, not %q" .Values.mode) -}}
{{- end -}}
{{- if and .Values.trustedProxies (not .Values.networkPolicy.gateway) (not .Values.networkPolicy.allowUnprotectedTrust) -}}
{{- fail "hatchway: trustedProxies without networkPolicy.gateway lets any pod (a user's workspace too) claim to be any user; keep networkPolicy.gateway, empty trustedProxies, or set networkPolicy.allowUnprotectedTrust if another policy already keeps workspaces away from hatchway" -}}
{{- end -}}
{{- if and (not .Values.hatcheryConfig.existingConfigMap) (not .Values.hatchery.json) (not .Values.hatchery.containers) -}}
{{- fail "hatchway: no Hatchery configuration: set hatchery.json or hatchery.containers (hatchery's values), or hatcheryConfig.existingConfigMap" -}}
{{- end -}}
{{- end }}

{{/* Every container: no privilege, nothing written outside its volumes. */}}
{{- define "hatchway.lockedDown" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* hatchway's volumes, in the gateway container and (Envoy mode) the envoy-config one. */}}
{{- define "hatchway.mounts" -}}
- name: settings
  mountPath: {{ dir (include "hatchway.settingsPath" .) }}
  readOnly: true
- name: hatchery
  mountPath: {{ dir (include "hatchway.hatcheryPath" .) }}
  readOnly: true
- name: state
  mountPath: /var/lib/hatchway
- name: tmp
  mountPath: /tmp
{{- if eq .Values.mode "envoy" }}
- name: envoy
  mountPath: {{ include "hatchway.envoyDir" . }}
{{- end }}
{{- end }}
