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
{{- $api := .Values.apiServices }}
{{- if and .Values.certManager.enabled .Values.tls.secretName }}
{{- fail "tls.secretName and certManager.enabled (on by default) both provide the serving certificate: set certManager.enabled=false to serve tls.secretName" }}
{{- end }}
{{- if and .Values.certManager.enabled $api.caBundle }}
{{- fail "apiServices.caBundle: cert-manager injects the caBundle when certManager.enabled (on by default); leave it empty, or set certManager.enabled=false" }}
{{- end }}
{{- if and $api.insecureSkipTLSVerify (or .Values.certManager.enabled $api.caBundle) }}
{{- fail "apiServices.insecureSkipTLSVerify would turn off the verification that certManager.enabled (on by default) or apiServices.caBundle provides: for a trial without cert-manager, set certManager.enabled=false as well" }}
{{- end }}
{{- if not (or .Values.certManager.enabled $api.caBundle $api.insecureSkipTLSVerify) }}
{{- fail "the APIServices would carry no caBundle, so kube-apiserver could not verify Gantry and they would stay unavailable: keep certManager.enabled=true (with cert-manager installed), serve tls.secretName with its CA in apiServices.caBundle, or, for a trial, set apiServices.insecureSkipTLSVerify=true" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled $api.insecureSkipTLSVerify }}
{{- fail "serviceMonitor.enabled: Prometheus verifies Gantry's serving certificate, and with apiServices.insecureSkipTLSVerify there is no CA to verify it with: use certManager.enabled, or tls.secretName with apiServices.caBundle" }}
{{- end }}
{{- range .Values.extraArgs }}
{{- if hasPrefix "--kubelet-via-apiserver-proxy" . }}
{{- fail (printf "extraArgs: %s: set kubelet.viaAPIServerProxy instead, which also grants the nodes/proxy access the flag needs" .) }}
{{- end }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.apiServer) }}
{{- fail "networkPolicy.apiServer is empty: the NetworkPolicy would keep the kube-apiserver from Gantry and every APIService would be unavailable; give the kube-apiserver's addresses (ipBlock)" }}
{{- end }}
{{- if not (include "gantry.apiServices" .) }}
{{- fail "apiServices: customMetrics, externalMetrics and resourceMetrics are all false; Gantry would serve nothing" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .Values.replicas)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) must be less than replicas (%v), or no node running Gantry could be drained; lower it or set podDisruptionBudget.enabled=false" $pdb.minAvailable .Values.replicas) }}
{{- end }}
{{- end }}
