// kubectl for the tests that run deploy/README.md's commands as written (tests/helm): the
// k8s.io/kubectl module's own command at the release tests/cluster/apiserver pins.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
