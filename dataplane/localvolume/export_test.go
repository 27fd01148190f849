package localvolume

// SetStepHook makes f run at each step of Create and Delete (tmp, built,
// renamed; detached, trashed), so a test can stop a process there.
func SetStepHook(f func(string)) { stepHook = f }
