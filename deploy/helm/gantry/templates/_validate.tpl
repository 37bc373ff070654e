{{/*
Checks across values that values.schema.json cannot express; renders
nothing, or fails the install with what to change.
*/}}
{{- define "gantry.validate" -}}
{{- $p := .Values.prometheus }}
{{- if and $p.bearerToken.file $p.bearerToken.secret.name }}
{{- fail "prometheus.bearerToken: set file or secret.name, not both" }}
{{- end }}
{{- if and $p.ca.secret.name $p.ca.configMap.name }}
{{- fail "prometheus.ca: set secret.name or configMap.name, not both" }}
{{- end }}
{{- if and .Values.certManager.enabled .Values.tls.secretName }}
{{- fail "tls.secretName and certManager.enabled both provide the serving certificate: set one" }}
{{- end }}
{{- if and .Values.certManager.enabled .Values.apiServices.caBundle }}
{{- fail "apiServices.caBundle: cert-manager injects the caBundle when certManager.enabled; leave it empty" }}
{{- end }}
{{- if not (include "gantry.apiServices" .) }}
{{- fail "apiServices: customMetrics, externalMetrics and resourceMetrics are all false; Gantry would serve nothing" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .Values.replicas)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) must be less than replicas (%v), or no node running Gantry could be drained; lower it or set podDisruptionBudget.enabled=false" $pdb.minAvailable .Values.replicas) }}
{{- end }}
{{- end }}
