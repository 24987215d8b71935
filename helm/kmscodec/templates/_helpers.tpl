{{/*
Helpers. Every template here takes a context with .Values and .Release (the root context of
this chart, or, from a parent chart, (dict "Values" .Values.kmscodec "Release" .Release
"Chart" .Subcharts.kmscodec.Chart "Capabilities" .Capabilities)), so a parent chart that
includes the sidecar templates gets the same names as this chart's own ConfigMap and
ServiceAccount. .Chart (the image tag, version labels) and .Capabilities (the native sidecar
check) are optional: templates look them up with hasKey.
*/}}

{{- define "kmscodec.name" -}}
{{- default "kmscodec" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kmscodec.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kmscodec.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kmscodec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kmscodec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kmscodec.labels" -}}
{{ include "kmscodec.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kmscodec
{{- if hasKey . "Chart" }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- with include "kmscodec.appVersion" . }}
app.kubernetes.io/version: {{ . | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
{{- end -}}

{{/* The version the image runs: image.tag, else the chart's appVersion (empty if neither). */}}
{{- define "kmscodec.appVersion" -}}
{{- if .Values.image.tag -}}
{{- toString .Values.image.tag -}}
{{- else if hasKey . "Chart" -}}
{{- .Chart.AppVersion -}}
{{- end -}}
{{- end -}}

{{- define "kmscodec.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kmscodec.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, repository:tag@digest, or repository@digest. */}}
{{- define "kmscodec.image" -}}
{{- $tag := include "kmscodec.appVersion" . -}}
{{- $digest := .Values.image.digest | default "" -}}
{{- if and $digest (not (regexMatch "^sha256:[0-9a-f]{64}$" $digest)) -}}
{{- fail (printf "image.digest %q is not a sha256 digest (sha256: and 64 hex digits)" $digest) -}}
{{- end -}}
{{- if and (not $tag) (not $digest) -}}
{{- fail "image.tag is empty and there is no chart appVersion to default to: set image.tag or image.digest (from a parent chart, pass \"Chart\" .Subcharts.kmscodec.Chart in the context)" -}}
{{- end -}}
{{- .Values.image.repository -}}
{{- with $tag }}:{{ . }}{{ end -}}
{{- with $digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/*
The native sidecar (an init container with restartPolicy: Always) needs Kubernetes 1.29: older
kubelets ignore restartPolicy on init containers and the pod hangs in Init. Refuse to render it
for an older cluster; sidecar.native=false renders the classic sidecar instead, by choice.
*/}}
{{- define "kmscodec.checkKubeVersion" -}}
{{- if and (ne .Values.mode "server") .Values.sidecar.native (hasKey . "Capabilities") -}}
{{- if semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version -}}
{{- fail (printf "sidecar.native=true needs Kubernetes 1.29 or later (native sidecars), this cluster is %s: set sidecar.native=false for a classic sidecar container (it stops together with the worker, see README.md)" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A byte count from config: an integer, or a string with B, kB, MB, GB, KiB, MiB, GiB. */}}
{{- define "kmscodec.bytes" -}}
{{- $value := .value -}}
{{- if kindIs "float64" $value }}{{ $value = int64 $value }}{{ end -}}
{{- $text := toString $value | trim -}}
{{- $match := regexFindAll "^([0-9]+)\\s*(B|kB|KB|MB|GB|KiB|MiB|GiB)?$" $text -1 -}}
{{- if not $match -}}
{{- fail (printf "%s: %q is not a byte count (an integer, or a number with B, kB, MB, GB, KiB, MiB, GiB)" .key $text) -}}
{{- end -}}
{{- $number := regexFind "^[0-9]+" $text | int64 -}}
{{- $unit := regexReplaceAll "^[0-9]+\\s*" $text "" -}}
{{- $scale := get (dict "" 1 "B" 1 "kB" 1000 "KB" 1000 "MB" 1000000 "GB" 1000000000 "KiB" 1024 "MiB" 1048576 "GiB" 1073741824) $unit -}}
{{- mul $number $scale -}}
{{- end -}}

{{/* A Kubernetes memory quantity in bytes (plain, k, M, G, T, Ki, Mi, Gi, Ti). */}}
{{- define "kmscodec.quantity" -}}
{{- $text := toString .value | trim -}}
{{- if not (regexMatch "^[0-9]+(k|M|G|T|Ki|Mi|Gi|Ti)?$" $text) -}}
{{- fail (printf "%s: %q is not a memory quantity this chart can check (e.g. 256Mi, 1Gi); set checkMemoryLimit=false to skip the check" .key $text) -}}
{{- end -}}
{{- $number := regexFind "^[0-9]+" $text | int64 -}}
{{- $unit := regexReplaceAll "^[0-9]+" $text "" -}}
{{- $scale := get (dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776) $unit -}}
{{- mul $number $scale -}}
{{- end -}}

{{/*
The memory limit must hold the worst case the codec limits allow (docs/operations.md, "Memory
under load"): 64 MiB + max_concurrent_requests × 4 × body_limit_bytes. Checked at render time,
so a limit that would be OOM-killed under load never reaches the cluster.
*/}}
{{- define "kmscodec.checkMemory" -}}
{{- $v := .Values -}}
{{- $memory := dig "limits" "memory" "" (default dict $v.resources) -}}
{{- if and $v.checkMemoryLimit $memory -}}
{{- $server := default dict (get (default dict $v.config) "server") -}}
{{- $body := include "kmscodec.bytes" (dict "key" "config.server.body_limit_bytes" "value" (get $server "body_limit_bytes" | default 67108864)) | int64 -}}
{{- $concurrent := get $server "max_concurrent_requests" | default 64 | int64 -}}
{{- $need := add 67108864 (mul $concurrent 4 $body) -}}
{{- $have := include "kmscodec.quantity" (dict "key" "resources.limits.memory" "value" $memory) | int64 -}}
{{- if lt $have $need -}}
{{- fail (printf "resources.limits.memory %s is below what the codec limits allow: 64 MiB + max_concurrent_requests (%d) x 4 x body_limit_bytes (%d) = %d MiB. Lower config.server.max_concurrent_requests or config.server.body_limit_bytes, raise the limit, or set checkMemoryLimit=false" $memory $concurrent $body (div (add $need 1048575) 1048576)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kmscodec.configPath" -}}/etc/kmscodec/kmscodec.toml{{- end -}}
{{- define "kmscodec.tokenDir" -}}/etc/kmscodec/auth/tokens{{- end -}}
{{- define "kmscodec.socketPath" -}}{{ printf "%s/%s" .Values.sidecar.socketDir .Values.sidecar.socketName }}{{- end -}}

{{/*
Server-mode authentication, checked at render time: refuse to render a codec server that
anyone who reaches the Service can use, unless explicitly allowed.
*/}}
{{- define "kmscodec.auth.methods" -}}
{{- $auth := .Values.server.auth -}}
{{- $methods := list -}}
{{- if $auth.tokens.principals -}}
{{- if not $auth.tokens.existingSecret -}}
{{- fail "server.auth.tokens.principals is set but server.auth.tokens.existingSecret is empty: name the Secret holding one token per principal" -}}
{{- end -}}
{{- $methods = append $methods "token" -}}
{{- end -}}
{{- if $auth.jwt.issuer -}}
{{- if or (not $auth.jwt.audiences) (not $auth.jwt.jwksUrl) -}}
{{- fail "server.auth.jwt.issuer is set: server.auth.jwt.audiences and server.auth.jwt.jwksUrl are required too" -}}
{{- end -}}
{{- $methods = append $methods "jwt" -}}
{{- end -}}
{{- if and $methods (not $auth.rules) -}}
{{- fail "server.auth.rules is empty: with authentication on, list who may decode and encode, e.g. [{principals: [\"token:oncall\", \"group:temporal-admins\"], namespaces: [\"*\"], roles: [\"read\"]}]" -}}
{{- end -}}
{{- if and (eq .Values.mode "server") (not $methods) (not $auth.allowUnauthenticated) -}}
{{- fail "server mode needs authentication: set server.auth.tokens (existingSecret + principals) or server.auth.jwt (issuer, audiences, jwksUrl), or set server.auth.allowUnauthenticated=true to serve the codec to anyone who reaches the Service" -}}
{{- end -}}
{{- toJson $methods -}}
{{- end -}}

{{/* providers and namespaces, or the development keyring when both are empty (as JSON). */}}
{{- define "kmscodec.devDefault" -}}
{{- and (empty .Values.providers) (empty .Values.namespaces) | ternary "true" "" -}}
{{- end -}}
{{- define "kmscodec.providers" -}}
{{- if include "kmscodec.devDefault" . -}}
{{- dict "dev" (dict "kind" "local" "path" "/var/lib/kmscodec/keys/keyring.json" "create_missing" true) | toJson -}}
{{- else -}}
{{- .Values.providers | default dict | toJson -}}
{{- end -}}
{{- end -}}
{{- define "kmscodec.namespaces" -}}
{{- if include "kmscodec.devDefault" . -}}
{{- dict "*" (dict "provider" "dev" "key" "dev") | toJson -}}
{{- else -}}
{{- .Values.namespaces | default dict | toJson -}}
{{- end -}}
{{- end -}}

{{/* The configuration file (TOML), from config, providers, namespaces and extraConfig. */}}
{{- define "kmscodec.configToml" -}}
{{- include "kmscodec.checkMemory" . -}}
{{- include "kmscodec.checkKubeVersion" . -}}
{{- $v := .Values -}}
{{- $config := deepCopy (default dict $v.config) -}}
{{- $server := deepCopy (default dict (get $config "server")) -}}
{{- $fixed := dict "admin_listen" (printf "0.0.0.0:%v" (int64 $v.ports.admin)) -}}
{{- if eq $v.mode "server" -}}
{{- $_ := set $fixed "listen" (printf "0.0.0.0:%v" (int64 $v.ports.http)) -}}
{{- $methods := include "kmscodec.auth.methods" . | fromJsonArray -}}
{{- if $methods -}}
{{- $_ := set $fixed "auth" $methods -}}
{{- $auth := dict -}}
{{- range $v.server.auth.tokens.principals -}}
{{- $_ := set $auth "tokens" (merge (default dict (get $auth "tokens")) (dict . (dict "file" (printf "%s/%s" (include "kmscodec.tokenDir" $) .)))) -}}
{{- end -}}
{{- with $v.server.auth.jwt -}}
{{- if .issuer -}}
{{- $jwt := dict "issuer" .issuer "audiences" .audiences "jwks_url" .jwksUrl -}}
{{- with .groupsClaim }}{{ $_ := set $jwt "groups_claim" . }}{{ end -}}
{{- $_ := set $auth "jwt" $jwt -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "auth" $auth -}}
{{- $_ := set $config "authz" (dict "rules" $v.server.auth.rules) -}}
{{- else if not (hasKey $server "allowed_hosts") -}}
{{- /* A listener without authentication answers only the Host names it is told (DNS
rebinding, docs/configuration.md): the Service's names and the Ingress hosts. */ -}}
{{- $svc := include "kmscodec.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- range $v.server.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end -}}
{{- $_ := set $server "allowed_hosts" $hosts -}}
{{- end -}}
{{- else -}}
{{- $_ := set $fixed "listen" (printf "127.0.0.1:%v" (int64 $v.ports.http)) -}}
{{- $_ := set $fixed "grpc_unix_socket" (include "kmscodec.socketPath" .) -}}
{{- end -}}
{{- $_ := set $config "server" (merge $fixed $server) -}}
{{- if $v.admin.tokenSecret.name -}}
{{- $_ := set $config "admin" (dict "token_file" "/etc/kmscodec/admin/token") -}}
{{- else if ne $v.mode "server" -}}
{{- /* Sidecar without a token: the admin API only on loopback, on its own port, so the port
the kubelet and Prometheus reach carries no admin route (a mesh makes every caller loopback). */ -}}
{{- $_ := set $config "admin" (dict "listen" (printf "127.0.0.1:%v" (int64 $v.ports.adminApi))) -}}
{{- end -}}
{{- $_ := set $config "providers" (include "kmscodec.providers" . | fromJson) -}}
{{- $_ := set $config "namespaces" (include "kmscodec.namespaces" . | fromJson) -}}
# Rendered by the kmscodec Helm chart from its values; every key: docs/configuration.md.
{{- include "kmscodec.toml.table" (dict "path" list "table" $config) }}
{{- with $v.extraConfig }}

# extraConfig
{{ . }}
{{- end }}
{{ end -}}
