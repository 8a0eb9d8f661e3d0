// Command vkp is a reverse proxy built for mirroring production traffic to a
// shadow service without the real request paying for it. See README.md.
package main

import (
	"os"

	"github.com/vkp-proxy/vkp/cli"
)

func main() { os.Exit(cli.Run(os.Args)) }
