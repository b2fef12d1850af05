{{/*
Names and labels.
*/}}
{{- define "oidc-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oidc-sidecar.fullname" -}}
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

{{- define "oidc-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oidc-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oidc-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "oidc-sidecar.labels" -}}
helm.sh/chart: {{ include "oidc-sidecar.chart" . }}
{{ include "oidc-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "oidc-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oidc-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Images: repository@digest, or repository:tag (the sidecar's tag defaults to the chart's appVersion).
*/}}
{{- define "oidc-sidecar.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (toString (.Values.image.tag | default .Chart.AppVersion)) }}
{{- end }}
{{- end }}

{{- define "oidc-sidecar.portalImage" -}}
{{- $image := .Values.portal.image }}
{{- $repository := required "portal.image.repository is required in mode sidecar: the image of the portal that runs beside the sidecar in each pod" $image.repository }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (toString (required "portal.image.tag (or portal.image.digest) is required in mode sidecar: the portal's version, so that every pod runs the same one and a rollback rolls it back" $image.tag)) }}
{{- end }}
{{- end }}

{{/*
Where the pod mounts the configuration, the secrets and the applications.
*/}}
{{- define "oidc-sidecar.configPath" -}}/etc/oidc-sidecar/config.yaml{{- end }}
{{- define "oidc-sidecar.secretsDir" -}}/etc/oidc-sidecar/secrets{{- end }}
{{- define "oidc-sidecar.appsDir" -}}/etc/oidc-sidecar/apps{{- end }}

{{- define "oidc-sidecar.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "oidc-sidecar.fullname" .)) }}
{{- end }}

{{- define "oidc-sidecar.applicationsSecretName" -}}
{{- .Values.applications.existingSecret | default (printf "%s-applications" (include "oidc-sidecar.fullname" .)) }}
{{- end }}

{{/*
A section of the user's configuration as a mapping ({} when absent).
*/}}
{{- define "oidc-sidecar.section" -}}
{{- $value := index .config .key }}
{{- if kindIs "map" $value }}{{ toYaml $value }}{{ else }}{}{{ end }}
{{- end }}

{{/*
The settings of .Values.config the chart itself reads, as YAML (use with fromYaml).
*/}}
{{- define "oidc-sidecar.settings" -}}
{{- $config := .Values.config | default dict }}
{{- $session := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "session")) }}
{{- $provider := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "provider")) }}
{{- $redis := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "redis")) }}
{{- $listen := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "listen")) }}
{{- $metrics := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "metrics")) }}
store: {{ (get $session "store") | default "memory" | quote }}
clientAuth: {{ (get $provider "clientAuth") | default "client_secret_basic" | quote }}
listenPort: {{ (get $listen "port") | default 4180 | int }}
metricsPort: {{ (get $metrics "port") | default 9464 | int }}
wiresClientSecret: {{ and (ne ((get $provider "clientAuth") | default "") "private_key_jwt") (not (hasKey $provider "clientSecretFile")) }}
wiresSessionSecret: {{ not (hasKey $session "secretFile") }}
{{- $redisPassword := ternary .Values.secrets.keys.redisPassword .Values.secrets.redisPassword (ne .Values.secrets.existingSecret "") }}
wiresRedisPassword: {{ and (eq ((get $session "store") | default "memory") "redis") (ne ($redisPassword | default "") "") (not (hasKey $redis "passwordFile")) }}
{{- $apps := .Values.applications }}
appsSecret: {{ or (ne $apps.existingSecret "") (gt (len $apps.list) 0) (gt (len $apps.files) 0) (gt (len $apps.binaryFiles) 0) }}
wiresApplicationsFile: {{ and (or (ne $apps.existingSecret "") (gt (len $apps.list) 0) (gt (len $apps.files) 0) (gt (len $apps.binaryFiles) 0)) (not (hasKey $config "applications")) (not (hasKey $config "applicationsFile")) }}
{{- end }}

{{/*
The sidecar's configuration file: .Values.config with upstream.url defaulted (mode sidecar) or rendered
through tpl, and the …File keys of the mounted secrets and applications.
*/}}
{{- define "oidc-sidecar.config" -}}
{{- $settings := fromYaml (include "oidc-sidecar.settings" .) }}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $redis := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "redis")) }}
{{- with get $redis "url" }}
{{- if (urlParse (toString .)).userinfo }}
{{- fail "config.redis.url holds a user name or password, which would be stored in plain text in a ConfigMap: leave them out of the URL and set secrets.redisPassword (or secrets.existingSecret) instead" }}
{{- end }}
{{- end }}
{{- $upstream := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "upstream")) }}
{{- if (get $upstream "url") }}
{{- $_ := set $upstream "url" (tpl (toString (get $upstream "url")) .) }}
{{- else if eq .Values.mode "sidecar" }}
{{- $_ := set $upstream "url" (printf "http://127.0.0.1:%d" (int .Values.portal.port)) }}
{{- end }}
{{- if $upstream }}{{ $_ := set $config "upstream" $upstream }}{{ end }}
{{- $secretsDir := include "oidc-sidecar.secretsDir" . }}
{{- if $settings.wiresClientSecret }}
{{- $provider := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "provider")) }}
{{- $_ := set $provider "clientSecretFile" (printf "%s/%s" $secretsDir .Values.secrets.keys.clientSecret) }}
{{- $_ := set $config "provider" $provider }}
{{- end }}
{{- if $settings.wiresSessionSecret }}
{{- $session := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "session")) }}
{{- $_ := set $session "secretFile" (printf "%s/%s" $secretsDir .Values.secrets.keys.sessionSecret) }}
{{- $_ := set $config "session" $session }}
{{- end }}
{{- if $settings.wiresRedisPassword }}
{{- $redis := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "redis")) }}
{{- $_ := set $redis "passwordFile" (printf "%s/%s" $secretsDir .Values.secrets.keys.redisPassword) }}
{{- $_ := set $config "redis" $redis }}
{{- end }}
{{- if $settings.wiresApplicationsFile }}
{{- $_ := set $config "applicationsFile" (printf "%s/%s" (include "oidc-sidecar.appsDir" .) .Values.applications.listKey) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
The checks no JSON schema can express; each failure explains itself.
*/}}
{{- define "oidc-sidecar.validate" -}}
{{- $settings := fromYaml (include "oidc-sidecar.settings" .) }}
{{- $config := .Values.config | default dict }}
{{- if not (has .Values.mode (list "sidecar" "standalone")) }}
{{- fail (printf "mode must be \"sidecar\" (the portal's container and the sidecar in one pod) or \"standalone\" (the sidecar alone, in front of the portal's Service), not %q" (toString .Values.mode)) }}
{{- end }}
{{- if and (eq $settings.store "memory") (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail (printf "config.session.store is \"memory\" (the default), which keeps sessions inside one pod, but %s: a user's next request would reach another replica that does not know the session. Set config.session.store: redis with config.redis.url, .sentinel or .cluster, or run one replica (replicaCount: 1, autoscaling.enabled: false)." (ternary "autoscaling is enabled" (printf "replicaCount is %d" (int .Values.replicaCount)) .Values.autoscaling.enabled)) }}
{{- end }}
{{- range $secret := list (list "provider" "clientSecret" "secrets.clientSecret") (list "session" "secret" "secrets.sessionSecret") (list "redis" "password" "secrets.redisPassword") }}
{{- $section := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" (index $secret 0))) }}
{{- if hasKey $section (index $secret 1) }}
{{- fail (printf "config.%s.%s would be stored in plain text in a ConfigMap: remove it from config and set %s (or secrets.existingSecret) instead" (index $secret 0) (index $secret 1) (index $secret 2)) }}
{{- end }}
{{- end }}
{{- $upstream := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "upstream")) }}
{{- if eq .Values.mode "standalone" }}
{{- $url := required "config.upstream.url is required in mode standalone: the URL of the portal's Service, e.g. http://portal.<namespace>.svc.cluster.local:8080" (get $upstream "url") }}
{{- $host := (urlParse (tpl (toString $url) .)).hostname }}
{{- if or (eq $host "localhost") (hasPrefix "127." $host) (eq $host "::1") }}
{{- fail (printf "config.upstream.url is %q, a loopback address, but in mode standalone the portal is not in the sidecar's pod: name the portal's Service, or use mode sidecar" (toString $url)) }}
{{- end }}
{{- else }}
{{- $_ := include "oidc-sidecar.portalImage" . }}
{{- end }}
{{- range $section := list "listen" "metrics" }}
{{- $host := (get (fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" $section))) "host") | default "0.0.0.0" | toString }}
{{- if or (eq $host "localhost") (hasPrefix "127." $host) (eq $host "::1") }}
{{- fail (printf "config.%s.host is %s, a loopback address: %s could not reach the port; leave it unset (0.0.0.0)" $section $host (ternary "the Service" "the probes and Prometheus" (eq $section "listen"))) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (has (int .Values.portal.port) (list (int $settings.listenPort) (int $settings.metricsPort))) }}
{{- fail (printf "portal.port %d is also a port of the sidecar (config.listen.port %d, config.metrics.port %d): the containers of a pod share one network namespace, so give them different ports" (int .Values.portal.port) (int $settings.listenPort) (int $settings.metricsPort)) }}
{{- end }}
{{- if and (gt (len .Values.applications.list) 0) (hasKey $config "applications") }}
{{- fail "applications are listed twice, in applications.list and in config.applications: keep one" }}
{{- end }}
{{- if and .Values.applications.existingSecret (or (gt (len .Values.applications.list) 0) (gt (len .Values.applications.files) 0) (gt (len .Values.applications.binaryFiles) 0)) }}
{{- fail "applications.list, .files and .binaryFiles fill the chart's own Secret, but applications.existingSecret is set: put them into that Secret instead" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (or (index .Values.autoscaling "targetCPUUtilizationPercentage") (index .Values.autoscaling "targetMemoryUtilizationPercentage"))) }}
{{- fail "autoscaling.enabled needs autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (eq .Values.mode "sidecar") }}
{{- $requests := (.Values.portal.resources | default dict).requests | default dict }}
{{- range $resource, $target := dict "cpu" (index .Values.autoscaling "targetCPUUtilizationPercentage") "memory" (index .Values.autoscaling "targetMemoryUtilizationPercentage") }}
{{- if and $target (not (index $requests $resource)) }}
{{- fail (printf "autoscaling on %s in mode sidecar needs portal.resources.requests.%s: Kubernetes computes a pod's utilization only when every container of it requests the resource, so the autoscaler would never scale" $resource $resource) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" (index .Values.podDisruptionBudget "minAvailable"))) (not (kindIs "invalid" (index .Values.podDisruptionBudget "maxUnavailable"))) }}
{{- fail "podDisruptionBudget: set either minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- end }}

{{/*
The TCP port of a URL: its explicit port, else the scheme's (https 443, http 80, redis/rediss 6379).
*/}}
{{- define "oidc-sidecar.urlPort" -}}
{{- $url := urlParse . }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- if $port }}{{ $port }}
{{- else if eq $url.scheme "http" }}80
{{- else if hasPrefix "redis" $url.scheme }}6379
{{- else }}443
{{- end }}
{{- end }}

{{/*
The TCP ports the sidecar connects to, as a YAML list of numbers: the identity provider, Redis and (mode
standalone) the portal.
*/}}
{{- define "oidc-sidecar.egressPorts" -}}
{{- $config := fromYaml (include "oidc-sidecar.config" .) }}
{{- $ports := list "443" }}
{{- $provider := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "provider")) }}
{{- $azure := fromYaml (include "oidc-sidecar.section" (dict "config" $provider "key" "azure")) }}
{{- $clients := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "clients")) }}
{{- $idpTokens := fromYaml (include "oidc-sidecar.section" (dict "config" $clients "key" "idpTokens")) }}
{{- range $url := list (get $provider "issuerUrl") (get $provider "authorizationEndpoint") (get $provider "tokenEndpoint") (get $azure "authorityHost") (get $azure "graphUrl") (get $idpTokens "issuer") }}
{{- if $url }}{{ $ports = append $ports (include "oidc-sidecar.urlPort" $url) }}{{ end }}
{{- end }}
{{- $redis := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "redis")) }}
{{- if (get $redis "url") }}{{ $ports = append $ports (include "oidc-sidecar.urlPort" (get $redis "url")) }}{{ end }}
{{- if (get $redis "sentinel") }}
{{- $ports = append $ports "6379" }}
{{- range $node := (dig "sentinel" "nodes" list $redis) }}{{ $ports = append $ports (regexFind "[0-9]+$" $node) }}{{ end }}
{{- end }}
{{- if (get $redis "cluster") }}
{{- range $node := (dig "cluster" "nodes" list $redis) }}{{ $ports = append $ports (regexFind "[0-9]+$" $node) }}{{ end }}
{{- end }}
{{- if eq .Values.mode "standalone" }}
{{- $upstream := fromYaml (include "oidc-sidecar.section" (dict "config" $config "key" "upstream")) }}
{{- if (get $upstream "url") }}{{ $ports = append $ports (include "oidc-sidecar.urlPort" (get $upstream "url")) }}{{ end }}
{{- end }}
{{- range .Values.networkPolicy.egress.extraPorts }}{{ $ports = append $ports (toString .) }}{{ end }}
{{- range $port := $ports | uniq | sortAlpha }}
- {{ $port }}
{{- end }}
{{- end }}
