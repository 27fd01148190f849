// Package eventv1 is the generated Go code of logplane.event.v1: the ObjectChanged envelope of
// every entry in the object log. Edit event.proto and run buf generate; never edit event.pb.go.
package eventv1
