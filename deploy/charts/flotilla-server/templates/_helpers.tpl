{{/* Names, labels and the mode switch shared by the templates. */}}

{{- define "flotilla-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name alone when it already says flotilla-server. */}}
{{- define "flotilla-server.fullname" -}}
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

{{- define "flotilla-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flotilla-server.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flotilla-server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flotilla-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flotilla-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the store is PostgreSQL (mode B: a Deployment of several replicas). */}}
{{- define "flotilla-server.postgres" -}}
{{- if or .Values.store.postgres.url .Values.store.postgres.existingSecret }}true{{ end }}
{{- end }}

{{- define "flotilla-server.storeSecretName" -}}
{{- default (printf "%s-store" (include "flotilla-server.fullname" .)) .Values.store.postgres.existingSecret }}
{{- end }}

{{- define "flotilla-server.storeSecretKey" -}}
{{- if .Values.store.postgres.existingSecret }}{{ .Values.store.postgres.existingSecretKey }}{{ else }}url{{ end }}
{{- end }}

{{- define "flotilla-server.adminSecretName" -}}
{{- default (printf "%s-admin" (include "flotilla-server.fullname" .)) .Values.adminToken.existingSecret }}
{{- end }}

{{- define "flotilla-server.adminSecretKey" -}}
{{- if .Values.adminToken.existingSecret }}{{ .Values.adminToken.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "flotilla-server.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The pod template of both modes. The volume `data` is mounted at /var/lib/flotilla and the data
dir is a subdirectory the server creates itself: the server restricts its data dir to its owner
(chmod 0700), which it can do only on a directory it owns, not on a volume's root.
*/}}
{{- define "flotilla-server.podTemplate" -}}
metadata:
  labels:
    {{- include "flotilla-server.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "flotilla-server.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: server
      image: {{ include "flotilla-server.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - server
        - --listen
        - 0.0.0.0:8080
        - --data-dir
        - /var/lib/flotilla/data
        - --shutdown-timeout
        - 25s
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        # git, helm and kustomize write their config and caches under HOME.
        - name: HOME
          value: /tmp
        - name: FLOTILLA_ADMIN_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "flotilla-server.adminSecretName" . }}
              key: {{ include "flotilla-server.adminSecretKey" . }}
        {{- if include "flotilla-server.postgres" . }}
        - name: FLOTILLA_STORE
          valueFrom:
            secretKeyRef:
              name: {{ include "flotilla-server.storeSecretName" . }}
              key: {{ include "flotilla-server.storeSecretKey" . }}
        {{- end }}
        {{- with .Values.renderAllowHosts }}
        - name: FLOTILLA_RENDER_ALLOW_HOSTS
          value: {{ join "," . | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.probes.startup | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /livez
          port: http
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /var/lib/flotilla
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir: {}
    {{- if include "flotilla-server.postgres" . }}
    # The data dir holds only the git cache when the store is PostgreSQL.
    - name: data
      emptyDir: {}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
