{{/*
A TOML writer for the configuration file. Helm's `toToml` writes every number from values as a
float (8388608 becomes 8.388608e+06), which kmscodec rightly refuses for integer keys, so the
chart writes TOML itself: whole numbers as integers, strings JSON-escaped (a valid TOML basic
string), lists inline, maps as [tables]. Keys that are not bare TOML keys ("*") are quoted.
*/}}

{{/* A TOML key: bare when it can be, else a quoted string. */}}
{{- define "kmscodec.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/* A TOML value: string, bool, number (integers without a fraction), a list, or a map inside a
list (an inline table). */}}
{{- define "kmscodec.toml.value" -}}
{{- $kind := kindOf . -}}
{{- if eq $kind "string" -}}{{ toJson . }}
{{- else if eq $kind "bool" -}}{{ ternary "true" "false" . }}
{{- else if or (eq $kind "float64") (eq $kind "float32") -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if hasPrefix "int" $kind -}}{{ . }}
{{- else if eq $kind "slice" -}}
[{{- range $i, $item := . -}}{{- if $i }}, {{ end -}}{{- include "kmscodec.toml.value" $item -}}{{- end -}}]
{{- else if eq $kind "map" -}}
{{- /* an inline table: only inside lists ([[authz.rules]] written as rules = [{...}]) */ -}}
{ {{- range $i, $key := keys . | sortAlpha -}}{{- if $i }}, {{ end -}}{{ include "kmscodec.toml.key" $key }} = {{ include "kmscodec.toml.value" (get $ $key) }}{{- end -}} }
{{- else -}}
{{- fail (printf "kmscodec configuration: cannot write a %s as a TOML value (%v)" $kind .) -}}
{{- end -}}
{{- end -}}

{{/*
One table: (dict "path" LIST-OF-KEYS "table" MAP). Scalars first, then sub-tables as
[path.key] sections, keys sorted (Go maps are iterated in key order by templates).
*/}}
{{- define "kmscodec.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- $hasScalars := false -}}
{{- range $key, $value := $table -}}
{{- if and (not (kindIs "map" $value)) (not (kindIs "invalid" $value)) -}}{{- $hasScalars = true -}}{{- end -}}
{{- end -}}
{{- if and $path $hasScalars }}{{ "\n" }}
[{{ range $i, $segment := $path }}{{ if $i }}.{{ end }}{{ include "kmscodec.toml.key" $segment }}{{ end }}]
{{- end -}}
{{- range $key, $value := $table -}}
{{- if and (not (kindIs "map" $value)) (not (kindIs "invalid" $value)) }}
{{ include "kmscodec.toml.key" $key }} = {{ include "kmscodec.toml.value" $value }}
{{- end -}}
{{- end -}}
{{- range $key, $value := $table -}}
{{- if kindIs "map" $value -}}
{{- include "kmscodec.toml.table" (dict "path" (append $path $key) "table" $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
