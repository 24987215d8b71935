{{/*
Helpers. Every template here takes a context with .Values and .Release (the root context of
this chart, or, from a parent chart, (dict "Values" .Values.kmscodec "Release" .Release)), and
never uses .Chart, so a parent chart that includes the sidecar templates gets the same names
as this chart's own ConfigMap and ServiceAccount.
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
{{- end -}}

{{- define "kmscodec.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kmscodec.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kmscodec.image" -}}
{{- $tag := .Values.image.tag | default "0.1.0" -}}
{{- printf "%s:%s" .Values.image.repository (toString $tag) -}}
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
{{- end -}}
{{- else -}}
{{- $_ := set $fixed "listen" (printf "127.0.0.1:%v" (int64 $v.ports.http)) -}}
{{- $_ := set $fixed "grpc_unix_socket" (include "kmscodec.socketPath" .) -}}
{{- end -}}
{{- $_ := set $config "server" (merge $fixed $server) -}}
{{- if $v.admin.tokenSecret.name -}}
{{- $_ := set $config "admin" (dict "token_file" "/etc/kmscodec/admin/token") -}}
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
