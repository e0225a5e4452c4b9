// Command etcd is etcd itself, built from the same module version that
// `stella serve` embeds, so that tests can run an external etcd cluster
// without downloading a release binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
