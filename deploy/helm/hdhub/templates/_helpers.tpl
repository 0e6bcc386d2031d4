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
{{- if .c.sftp.enabled }}
- name: HDHUB_{{ $svc }}_SFTP_PORT
  value: {{ .c.sftp.port | quote }}
{{- end }}
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
{{ include "hdhub.telemetryEnv" . }}
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
{{- with .root.Values.telemetry.otlp.caSecret }}
- name: otlp-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- if .serving }}
{{- include "hdhub.servingVolumes" . }}
{{- end }}
{{- if include "hdhub.myCareNetFolder" . }}
- name: mycarenet
  persistentVolumeClaim:
    claimName: {{ include "hdhub.myCareNetClaim" .root }}
{{- end }}
{{- end -}}

{{- define "hdhub.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: {{ .root.Values.secrets.mountPath }}
  readOnly: true
{{- if .root.Values.telemetry.otlp.caSecret }}
- name: otlp-ca
  mountPath: {{ .root.Values.telemetry.otlp.caMountPath }}
  readOnly: true
{{- end }}
{{- if .serving }}
{{- include "hdhub.servingVolumeMounts" . }}
{{- end }}
{{- if include "hdhub.myCareNetFolder" . }}
- name: mycarenet
  mountPath: {{ .root.Values.myCareNet.folder.mountPath }}
{{- end }}
{{- end -}}

{{/* The MyCareNet gateway's folder (FILE_SYSTEM): nippin's worker sends and reads TACKs there. */}}
{{- define "hdhub.myCareNetFolder" -}}
{{- if and .worker .c.myCareNet (eq .root.Values.myCareNet.interface "FILE_SYSTEM") }}true{{ end -}}
{{- end -}}

{{- define "hdhub.myCareNetClaim" -}}
{{- .Values.myCareNet.folder.existingClaim | default (printf "%s-mycarenet" (include "hdhub.fullname" .)) -}}
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
HDHUB_NIPPIN_INTERFACE: {{ .Values.myCareNet.interface | quote }}
{{- if eq .Values.myCareNet.interface "FILE_SYSTEM" }}
HDHUB_NIPPIN_FOLDER: {{ .Values.myCareNet.folder.mountPath | quote }}
{{- end }}
{{- with .Values.centralPlatform.target }}
{{- /* The central platform's receiver; unset, the sim component stands in (dev, tests). */}}
HDHUB_GRPC_CENTRAL: {{ . | quote }}
{{- end }}
{{- if eq .Values.grpcTls.mode "mesh" }}
{{- /* A service mesh provides mutual TLS between the pods: gRPC stays plaintext inside. */}}
HDHUB_GRPC_MESH_MTLS: "true"
{{- end }}
{{- with .Values.telemetry.otlp }}
{{- if .endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .endpoint | quote }}
{{- end }}
{{- if .caSecret }}
OTEL_EXPORTER_OTLP_CERTIFICATE: {{ printf "%s/ca.crt" .caMountPath | quote }}
{{- end }}
{{- end }}
{{- with .Values.telemetry.sampler }}
OTEL_TRACES_SAMPLER: {{ .name | quote }}
{{- if .arg }}
OTEL_TRACES_SAMPLER_ARG: {{ .arg | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "hdhub.envFrom" -}}
- configMapRef:
    name: {{ include "hdhub.fullname" .root }}-platform
{{- end -}}

{{- /* --- Transport security, telemetry, scheduling (docs/operations.md) --------------- */}}

{{/* "true" when gRPC between the services is mutual TLS from mounted certificate files. */}}
{{- define "hdhub.grpcTlsFiles" -}}
{{- if has .Values.grpcTls.mode (list "certManager" "secrets") }}true{{ end -}}
{{- end -}}

{{/* The Secret holding a component's gRPC certificate, key and CA (cert-manager's layout). */}}
{{- define "hdhub.grpcTlsSecret" -}}
{{- printf "%s-grpc-tls" (include "hdhub.componentName" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Whether a component reaches the real central platform (not the sim) over TLS from a Secret. */}}
{{- define "hdhub.centralTls" -}}
{{- $central := .root.Values.centralPlatform -}}
{{- if and .c.central $central.target $central.tls.existingSecret }}true{{ end -}}
{{- end -}}

{{/* Volumes of the serving pods (Deployment, worker), not of the migration Job: certificates. */}}
{{- define "hdhub.servingVolumes" -}}
{{- if include "hdhub.grpcTlsFiles" .root }}
- name: grpc-tls
  secret:
    secretName: {{ include "hdhub.grpcTlsSecret" . }}
    defaultMode: 0440
{{- end }}
{{- if include "hdhub.centralTls" . }}
- name: central-tls
  secret:
    secretName: {{ .root.Values.centralPlatform.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "hdhub.servingVolumeMounts" -}}
{{- if include "hdhub.grpcTlsFiles" .root }}
- name: grpc-tls
  mountPath: {{ .root.Values.grpcTls.mountPath }}
  readOnly: true
{{- end }}
{{- if include "hdhub.centralTls" . }}
- name: central-tls
  mountPath: {{ .root.Values.centralPlatform.tls.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Environment of the serving containers: where the certificates are (hdhub.common.grpc_tls). */}}
{{- define "hdhub.servingEnv" -}}
{{- if include "hdhub.grpcTlsFiles" .root }}
{{- $dir := .root.Values.grpcTls.mountPath }}
- name: HDHUB_GRPC_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" $dir | quote }}
- name: HDHUB_GRPC_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" $dir | quote }}
- name: HDHUB_GRPC_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" $dir | quote }}
{{- end }}
{{- if include "hdhub.centralTls" . }}
{{- $tls := .root.Values.centralPlatform.tls }}
- name: HDHUB_CENTRAL_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" $tls.mountPath | quote }}
{{- if $tls.clientCertificate }}
- name: HDHUB_CENTRAL_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" $tls.mountPath | quote }}
- name: HDHUB_CENTRAL_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" $tls.mountPath | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* OpenTelemetry's resource attributes from the downward API, and the exporter's headers
from a Secret; the endpoint and CA are in the platform ConfigMap (hdhub.platformEnv). */}}
{{- define "hdhub.telemetryEnv" -}}
{{- $otel := .root.Values.telemetry }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "hdhub.resourceAttributes" . | quote }}
{{- with $otel.otlp.headers.existingSecret }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $otel.otlp.headers.key }}
{{- end }}
{{- end -}}

{{- define "hdhub.resourceAttributes" -}}
{{- $attributes := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" "k8s.node.name=$(K8S_NODE_NAME)" -}}
{{- range $key, $value := .root.Values.telemetry.resourceAttributes -}}
{{- $attributes = append $attributes (printf "%s=%v" $key $value) -}}
{{- end -}}
{{- join "," $attributes -}}
{{- end -}}

{{/* Spread a Deployment's pods over nodes (dict root, c, component: the pods' component label). */}}
{{- define "hdhub.topologySpread" -}}
{{- if .c.topologySpreadConstraints }}
{{- toYaml .c.topologySpreadConstraints }}
{{- else }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "hdhub.selectorLabels" .root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}
