package localvolume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ValidateName checks a volume name given by a user (a PersistentVolume's
// name, a claim's UID): a DNS-1123 subdomain, as the API server requires of
// PV names, so lowercase letters, digits, '-' and '.', at most 253
// characters, starting and ending with a letter or digit: no '/', no "..",
// nothing that names a path outside the base directory. The error wraps
// ErrInvalidName.
func ValidateName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("%w %q: %s", ErrInvalidName, name, strings.Join(msgs, "; "))
	}
	return nil
}

// ValidateLocalPath checks the path of a hand-written `local`
// PersistentVolume on this node, as the kubelet's local volume plugin does
// before mounting it: absolute, without "..", existing, a directory (a block
// device, which the kubelet would format, is not supported).
func ValidateLocalPath(path string) error {
	if path == "" {
		return errors.New("local volume source is nil or local path is not set")
	}
	if !filepath.IsAbs(path) {
		return fmt.Errorf("invalid path: %s must be absolute", path)
	}
	for _, part := range strings.Split(path, "/") {
		if part == ".." {
			return fmt.Errorf("invalid path: %s must not contain '..'", path)
		}
	}
	t, err := fileType(path)
	if err != nil {
		return err
	}
	switch t {
	case corev1.HostPathDirectory:
		return nil
	case corev1.HostPathBlockDev:
		return fmt.Errorf("local volume %s is a block device: logplane supports directories only", path)
	default:
		return errors.New("only directory and block device are supported")
	}
}

// CheckHostPath checks a hostPath volume's path against its type on this
// node without creating anything, with the kubelet's messages
// (pkg/volume/hostpath checkType): the OrCreate types accept a missing path
// (the pod worker makes it) but not one of another type; the empty type
// checks nothing.
func CheckHostPath(path string, typ corev1.HostPathType) error {
	want := map[corev1.HostPathType]struct {
		t    corev1.HostPathType
		desc string
	}{
		corev1.HostPathDirectoryOrCreate: {corev1.HostPathDirectory, "directory"},
		corev1.HostPathDirectory:         {corev1.HostPathDirectory, "directory"},
		corev1.HostPathFileOrCreate:      {corev1.HostPathFile, "file"},
		corev1.HostPathFile:              {corev1.HostPathFile, "file"},
		corev1.HostPathSocket:            {corev1.HostPathSocket, "socket file"},
		corev1.HostPathCharDev:           {corev1.HostPathCharDev, "character device"},
		corev1.HostPathBlockDev:          {corev1.HostPathBlockDev, "block device"},
	}
	if typ == corev1.HostPathUnset {
		return nil
	}
	w, ok := want[typ]
	if !ok {
		return fmt.Errorf("%s is an invalid volume type", typ)
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if typ == corev1.HostPathDirectoryOrCreate || typ == corev1.HostPathFileOrCreate {
			return nil
		}
		return fmt.Errorf("hostPath %s doesn't exist", path)
	}
	got, err := fileType(path)
	if err != nil {
		return fmt.Errorf("hostPath type check failed, %s is not a %s, unable to determine its type: %w", path, w.desc, err)
	}
	if got != w.t {
		return fmt.Errorf("hostPath type check failed: %s is not a %s, it's a %s", path, w.desc, got)
	}
	return nil
}

// fileType is the kubelet's hostutil GetFileType: what path (followed) is.
func fileType(path string) (corev1.HostPathType, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", &os.PathError{Op: "stat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return corev1.HostPathSocket, nil
	case unix.S_IFBLK:
		return corev1.HostPathBlockDev, nil
	case unix.S_IFCHR:
		return corev1.HostPathCharDev, nil
	case unix.S_IFDIR:
		return corev1.HostPathDirectory, nil
	case unix.S_IFREG:
		return corev1.HostPathFile, nil
	}
	return "", fmt.Errorf("only recognise file, directory, socket, block device and character device")
}
