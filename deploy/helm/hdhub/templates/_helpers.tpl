{{/* Names and labels. */}}
{{- define "hdhub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hdhub.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "hdhub.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "hdhub.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hdhub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "hdhub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hdhub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hdhub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "hdhub.selectorLabels" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hdhub
{{- end -}}

{{/*
The components, each merged over `default:`, as a YAML map name -> spec, enabled ones only.
`enabled` is read explicitly: sprig's merge treats false as empty and would let the default win.
*/}}
{{- define "hdhub.components" -}}
{{- $out := dict -}}
{{- range $name, $spec := .Values.components -}}
{{- $spec = default dict $spec -}}
{{- $enabled := $.Values.default.enabled -}}
{{- if hasKey $spec "enabled" -}}{{- $enabled = $spec.enabled -}}{{- end -}}
{{- if $enabled -}}
{{- $merged := mergeOverwrite (deepCopy $.Values.default) (deepCopy $spec) -}}
{{- $_ := set $merged "enabled" true -}}
{{- $_ := set $merged "name" $name -}}
{{- $_ := set $out $name $merged -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The Kubernetes name of one component: <fullname>-<component>. */}}
{{- define "hdhub.componentName" -}}
{{- printf "%s-%s" (include "hdhub.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hdhub.componentLabels" -}}
{{ include "hdhub.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Environment of every container of a component (dict root, name, c, components). */}}
{{- define "hdhub.env" -}}
{{- $p := .root.Values.platform -}}
{{- $svc := .name | upper -}}
- name: HDHUB_{{ $svc }}_GRPC_BIND
  value: {{ printf "0.0.0.0:%v" .c.ports.grpc | quote }}
{{- range $other, $oc := .components }}
{{- /* Headless Services: the DNS resolver sees every pod, so clients can balance across them. */}}
- name: HDHUB_GRPC_{{ $other | upper }}
  value: {{ printf "dns:///%s-grpc:%v" (include "hdhub.componentName" (dict "root" $.root "name" $other)) $oc.ports.grpc | quote }}
{{- end }}
{{- with $p.env }}
{{ toYaml . }}
{{- end }}
{{- with .c.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes: /tmp (the only writable place) and the secrets projected into one folder. */}}
{{- define "hdhub.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .c.tmpSizeLimit }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
{{- range (concat .root.Values.secrets.existingSecrets .c.secrets) }}
      - secret:
          name: {{ . }}
          optional: false
{{- end }}
{{- end -}}

{{- define "hdhub.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: {{ .root.Values.secrets.mountPath }}
  readOnly: true
{{- end -}}

{{/* Pod-level settings shared by the Deployment, the worker and the migration Job. */}}
{{- define "hdhub.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .c.podSecurityContext | nindent 2 }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "hdhub.volumes" . | nindent 2 }}
{{- end -}}

{{/* The platform settings every process shares: the ConfigMap's data, and its checksum. */}}
{{- define "hdhub.platformEnv" -}}
{{- $p := .Values.platform -}}
HDHUB_ENVIRONMENT: {{ $p.environment | quote }}
HDHUB_PUBLIC_URL: {{ $p.publicUrl | quote }}
HDHUB_LOG_LEVEL: {{ $p.logLevel | quote }}
HDHUB_LOG_FORMAT: "json"
HDHUB_DATA_DIR: "/tmp/hdhub"
HDHUB_SECRETS_DIR: {{ .Values.secrets.mountPath | quote }}
HDHUB_OIDC_ISSUER: {{ (ternary (printf "%s/realms/hdhub" $p.publicUrl) $p.oidc.issuer $p.oidc.embedded) | quote }}
HDHUB_OIDC_AUDIENCE: {{ $p.oidc.audience | quote }}
{{- if $p.oidc.embedded }}
{{- /* Keys from identity inside the cluster: the public URL may not be reachable from pods. */}}
HDHUB_OIDC_JWKS_URL: {{ printf "http://%s-identity:%v/realms/hdhub/protocol/openid-connect/certs" (include "hdhub.fullname" .) (.Values.components.identity.ports | default .Values.default.ports).http | quote }}
HDHUB_OIDC_TOKEN_URL: {{ printf "http://%s-identity:%v/realms/hdhub/protocol/openid-connect/token" (include "hdhub.fullname" .) (.Values.components.identity.ports | default .Values.default.ports).http | quote }}
{{- end }}
{{- with .Values.myCareNet.url }}
HDHUB_NIPPIN_MYCARENET_URL: {{ . | quote }}
{{- end }}
{{- with .Values.centralPlatform.target }}
{{- /* The central platform's receiver; unset, the sim component stands in (dev, tests). */}}
HDHUB_GRPC_CENTRAL: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "hdhub.envFrom" -}}
- configMapRef:
    name: {{ include "hdhub.fullname" .root }}-platform
{{- end -}}
