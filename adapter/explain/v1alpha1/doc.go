// +k8s:deepcopy-gen=package
// +groupName=diagnostics.gantry.dev

package v1alpha1
