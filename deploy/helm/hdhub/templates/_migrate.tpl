{{/*
Migrations: every pod of a component with a database runs `hdhub migrate SVC` as its init
container before its process starts. Pods starting together take turns on a PostgreSQL
advisory lock; the first migrates, the others find the schema current; a schema ahead of the
image (a rollback) is left alone. This orders migrations before serving on the first install
and on every upgrade, with Helm and kustomize alike, without hooks (docs/operations.md,
"Migrations"). The services themselves stay not ready while their schema is behind.
*/}}
{{- define "hdhub.migrateInitContainers" -}}
{{- if and .root.Values.migrations.enabled .c.migrate }}
initContainers:
  - name: migrate
    image: {{ include "hdhub.image" .root }}
    imagePullPolicy: {{ .root.Values.image.pullPolicy }}
    args: ["migrate", {{ .name | quote }}]
    envFrom:
      {{- include "hdhub.envFrom" . | nindent 6 }}
    env:
      {{- include "hdhub.env" . | nindent 6 }}
    resources:
      {{- toYaml .c.resources | nindent 6 }}
    securityContext:
      {{- toYaml .c.securityContext | nindent 6 }}
    volumeMounts:
      {{- include "hdhub.volumeMounts" . | nindent 6 }}
{{- end }}
{{- end -}}
