//go:build !race

package podnet

const raceBuild = false
