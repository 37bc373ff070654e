// Command kubectl-gantry is the kubectl plugin for Gantry: kubectl gantry explain, doctor.
package main

import (
	"os"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

func main() {
	flags := genericclioptions.NewConfigFlags(true)
	cmd := &cobra.Command{Use: "kubectl gantry"}
	flags.AddFlags(cmd.PersistentFlags())
	if err := cmd.Execute(); err != nil {
		os.Exit(2)
	}
}
