{{/*
The kmscodec container and the sidecar templates another chart includes to add kmscodec to its
worker pods. Each takes a context with .Values (this chart's values) and .Release: from this
chart pass `.`; from a parent chart that has kmscodec as a dependency, pass
(dict "Values" .Values.kmscodec "Release" .Release "Chart" .Subcharts.kmscodec.Chart
"Capabilities" .Capabilities). README.md shows a whole pod template.

  kmscodec.sidecar.initContainers     the native sidecar (restartPolicy: Always); empty when
                                      sidecar.native is false
  kmscodec.sidecar.containers         the plain-container fallback; empty when sidecar.native
  kmscodec.sidecar.volumes            config, socket dir, data dir, tmp
  kmscodec.sidecar.workerVolumeMounts the socket dir, for the worker container
  kmscodec.sidecar.workerEnv          KMSCODEC_ENDPOINT (HTTP) and KMSCODEC_GRPC_ENDPOINT (unix:)
  kmscodec.sidecar.podLabels          the label the PodMonitor selects
  kmscodec.sidecar.podAnnotations     a checksum of the configuration (rolls pods on change)
*/}}

{{/* The kmscodec container (a list item), for both modes. */}}
{{- define "kmscodec.container" -}}
{{- $v := .Values -}}
- name: kmscodec
  image: {{ include "kmscodec.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if and (ne $v.mode "server") $v.sidecar.native }}
  # A native sidecar (Kubernetes 1.29+): started before the worker, stopped after it.
  restartPolicy: Always
  {{- end }}
  args:
    - serve
    - --config
    - {{ include "kmscodec.configPath" . | quote }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    {{- if eq $v.mode "server" }}
    - name: http
      containerPort: {{ $v.ports.http }}
      protocol: TCP
    {{- end }}
    - name: admin
      containerPort: {{ $v.ports.admin }}
      protocol: TCP
  {{- $env := concat (default list $v.env) (default list $v.extraEnv) }}
  {{- with $v.log.format }}
  {{- $env = prepend $env (dict "name" "KMSCODEC_LOG_FORMAT" "value" .) }}
  {{- end }}
  {{- with $v.log.level }}
  {{- $env = prepend $env (dict "name" "KMSCODEC_LOG" "value" .) }}
  {{- end }}
  {{- with $env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # Probes on the admin listener. Startup and liveness: /healthz, the process is alive (never
  # the KMS, so a KMS outage restarts nothing). Readiness: /readyz, the key providers answered
  # once and none has failed for server.readiness_grace, and the process is not draining.
  startupProbe:
    httpGet: {path: /healthz, port: admin}
    periodSeconds: {{ $v.probes.startup.periodSeconds }}
    failureThreshold: {{ $v.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet: {path: /healthz, port: admin}
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet: {path: /readyz, port: admin}
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  volumeMounts:
    - name: kmscodec-config
      mountPath: /etc/kmscodec/kmscodec.toml
      subPath: kmscodec.toml
      readOnly: true
    - name: kmscodec-data
      mountPath: /var/lib/kmscodec
    - name: kmscodec-tmp
      mountPath: /tmp
    {{- if $v.admin.tokenSecret.name }}
    - name: kmscodec-admin-token
      mountPath: /etc/kmscodec/admin
      readOnly: true
    {{- end }}
    {{- if eq $v.mode "server" }}
    {{- if $v.server.auth.tokens.principals }}
    - name: kmscodec-tokens
      mountPath: {{ include "kmscodec.tokenDir" . }}
      readOnly: true
    {{- end }}
    {{- else }}
    - name: kmscodec-socket
      mountPath: {{ $v.sidecar.socketDir }}
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "kmscodec.sidecar.initContainers" -}}
{{- include "kmscodec.checkKubeVersion" . -}}
{{- if .Values.sidecar.native -}}
{{ include "kmscodec.container" . }}
{{- end -}}
{{- end -}}

{{- define "kmscodec.sidecar.containers" -}}
{{- if not .Values.sidecar.native -}}
{{ include "kmscodec.container" . }}
{{- end -}}
{{- end -}}

{{- define "kmscodec.volumes" -}}
{{- $v := .Values -}}
- name: kmscodec-config
  configMap:
    name: {{ include "kmscodec.fullname" . }}
- name: kmscodec-data
  emptyDir: {}
- name: kmscodec-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- with $v.admin.tokenSecret }}
{{- if .name }}
- name: kmscodec-admin-token
  secret:
    secretName: {{ .name }}
    defaultMode: 0440
    items:
      - key: {{ .key }}
        path: token
{{- end }}
{{- end }}
{{- if eq $v.mode "server" }}
{{- if $v.server.auth.tokens.principals }}
- name: kmscodec-tokens
  secret:
    secretName: {{ $v.server.auth.tokens.existingSecret }}
    defaultMode: 0440
    items:
      {{- range $v.server.auth.tokens.principals }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- else }}
- name: kmscodec-socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kmscodec.sidecar.volumes" -}}
{{ include "kmscodec.volumes" . }}
{{- end -}}

{{- define "kmscodec.sidecar.workerVolumeMounts" -}}
- name: kmscodec-socket
  mountPath: {{ .Values.sidecar.socketDir }}
{{- end -}}

{{- define "kmscodec.sidecar.workerEnv" -}}
- name: KMSCODEC_ENDPOINT
  value: {{ printf "http://127.0.0.1:%v" (int64 .Values.ports.http) | quote }}
- name: KMSCODEC_GRPC_ENDPOINT
  value: {{ printf "unix://%s" (include "kmscodec.socketPath" .) | quote }}
{{- end -}}

{{- define "kmscodec.sidecar.podLabels" -}}
kmscodec.io/sidecar: {{ include "kmscodec.fullname" . | quote }}
{{- end -}}

{{- define "kmscodec.sidecar.podAnnotations" -}}
checksum/kmscodec-config: {{ include "kmscodec.configToml" . | sha256sum }}
{{- end -}}
