// Package snapshotv1 is the generated Go code of logplane.snapshot.v1: the format of projection
// snapshots. Edit snapshot.proto and run buf generate; never edit snapshot.pb.go.
package snapshotv1
