package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// newValidateCommand is `validate --cloud-config FILE`: it checks a cloud
// config file as the controller manager would at start and on reload, for
// CI pipelines and GitOps, without a kubeconfig, a cluster or the network.
// It only reads the file and the password files the file names.
func newValidateCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate --cloud-config FILE",
		Short: "Check a cloud config file and print every problem, without starting anything",
		Long: `Check a cloud config file as the controller manager does at start and on
reload, without starting it: no kubeconfig, cluster or network is needed.
Every problem is printed with its field path, and the exit status is 1.
A valid file prints "FILE: valid" and any warnings, and exits 0.
The password files the file names are read, as the controller manager
does: run it where they are mounted, or where copies of them are.`,
		Args: cobra.NoArgs,
		// Its own hook, so that the root's, which sets up the controller
		// manager's logging, does not run: the output is for people.
		PersistentPreRun: func(*cobra.Command, []string) {},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return validateFile(cmd.OutOrStdout(), path)
		},
	}
	cmd.Flags().StringVar(&path, "cloud-config", "", "The cloud config file to check.")
	return cmd
}

// validateFile loads the file and prints that it is valid and its
// warnings; an invalid or unreadable file is the error, which lists every
// problem.
func validateFile(out io.Writer, path string) error {
	if path == "" {
		return errors.New("--cloud-config is required: the path of the cloud config file to check")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: valid\n", path)
	for _, w := range cfg.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	return nil
}
