package containerd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	client "github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// This file ports how containerd's CRI plugin (containerd 1.7,
// pkg/cri/server/container_create_linux.go and pkg/cri/opts/spec_opts.go)
// turns a container's LinuxContainerSecurityContext into OCI spec options:
// the user and groups, capabilities, privileged, no_new_privs, a read-only
// root filesystem and seccomp. The defaults are the CRI's: the base spec's
// capabilities (oci's default set, the same for every CRI container),
// privilege escalation allowed, no seccomp profile.

// labelUser records the user the process runs as, "uid:gid:g1,g2,...", as the
// spec resolved it; ContainerStatus reports it (Kubernetes' containerStatuses[].user).
const labelUser = runtimeapi.LabelPrefix + "user"

// imageConfig returns the config of an image, read once per image digest.
func (r *Runtime) imageConfig(ctx context.Context, img client.Image) (ocispec.ImageConfig, error) {
	key := img.Target().Digest
	r.mu.Lock()
	ic, ok := r.imageConfigs[key]
	r.mu.Unlock()
	if ok {
		return ic, nil
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return ocispec.ImageConfig{}, fmt.Errorf("containerd: image config of %s: %w", img.Name(), err)
	}
	r.mu.Lock()
	r.imageConfigs[key] = spec.Config
	r.mu.Unlock()
	return spec.Config, nil
}

// imageUser is the CRI's getUserFromImage: the UID of the image's USER when
// it is numeric ("1000", "1000:1000"), else its name; both empty when the
// image names no user.
func imageUser(user string) (*int64, string) {
	if user == "" {
		return nil, ""
	}
	user, _, _ = strings.Cut(user, ":")
	uid, err := strconv.ParseInt(user, 10, 64)
	if err != nil {
		return nil, user
	}
	return &uid, ""
}

// defaultEnv is the environment of an image that sets none (oci's default).
var defaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// withImageDefaults sets the environment and working directory the image's
// config gives, as oci.WithImageConfig does, but not its user: securityOpts
// resolves that, reading the image's /etc/passwd and /etc/group once.
func withImageDefaults(ic ocispec.ImageConfig) oci.SpecOpts {
	env := ic.Env
	if len(env) == 0 {
		env = defaultEnv
	}
	cwd := ic.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	return oci.Compose(oci.WithEnv(env), oci.WithProcessCwd(cwd))
}

// securityOpts returns the spec options of a container's security context,
// in the order containerd's CRI plugin applies them (containerSpec, then
// containerSpecOpts). imageUser is the image config's USER. They come after
// the mounts, env and resources, and last of all: the default seccomp profile
// depends on the capabilities.
func securityOpts(sc runtimeapi.SecurityContext, imageUser string) ([]oci.SpecOpts, error) {
	// Kubernetes allows privilege escalation unless told otherwise; the base
	// spec sets no_new_privs.
	opts := []oci.SpecOpts{oci.WithNewPrivileges}
	if sc.Capabilities != nil {
		opts = append(opts, withCapabilities(sc.Capabilities))
	}
	if sc.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithHostDevices, oci.WithAllDevicesAllowed)
	}
	// Ambient capabilities are cleared, as Docker and the CRI do (kubernetes#56374).
	opts = append(opts, withoutAmbientCaps)
	if sc.NoNewPrivs {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if sc.ReadonlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	user, err := userOpts(sc, imageUser)
	if err != nil {
		return nil, err
	}
	opts = append(opts, user)
	sp, err := seccompOpts(sc.Seccomp, sc.Privileged)
	if err != nil {
		return nil, err
	}
	if sp != nil {
		opts = append(opts, sp)
	}
	return opts, nil
}

// userOpts sets the process's UID, GID and groups as the CRI plugin does:
// the user string from runAsUsername/runAsUser/runAsGroup (else the image's
// USER) resolved against the image's /etc/passwd, then (unless the policy is
// Strict) the groups /etc/group lists the user in, then the supplemental
// groups. The image's files are read on one read-only mount of the
// container's snapshot, and only when a lookup is needed.
func userOpts(sc runtimeapi.SecurityContext, imageUser string) (oci.SpecOpts, error) {
	userstr, err := userString(sc.RunAsUsername, sc.RunAsUser, sc.RunAsGroup)
	if err != nil {
		return nil, err
	}
	if userstr == "" {
		userstr = imageUser
	}
	var lookups []oci.SpecOpts
	needRootfs := false
	if userstr != "" {
		lookups = append(lookups, oci.WithUser(userstr))
		needRootfs = !numericUserGroup(userstr)
	}
	if sc.SupplementalGroupsPolicy != runtimeapi.SupplementalGroupsStrict {
		needRootfs = true
		of := "0" // the runtime's default user
		switch {
		case sc.RunAsUsername != "":
			of = sc.RunAsUsername
		case sc.RunAsUser != nil:
			of = strconv.FormatInt(*sc.RunAsUser, 10)
		case imageUser != "":
			of, _, _ = strings.Cut(imageUser, ":")
		}
		lookups = append(lookups, withAdditionalGIDs(of))
	}
	groups := withSupplementalGroups(sc.SupplementalGroups)
	if !needRootfs {
		return oci.Compose(append(lookups, groups)...), nil
	}
	return oci.Compose(withRootfs(lookups...), groups), nil
}

// numericUserGroup reports whether userstr is "uid:gid" with both numeric:
// oci.WithUser then reads nothing from the image.
func numericUserGroup(userstr string) bool {
	u, g, ok := strings.Cut(userstr, ":")
	if !ok {
		return false
	}
	_, uerr := strconv.ParseUint(u, 10, 32)
	_, gerr := strconv.ParseUint(g, 10, 32)
	return uerr == nil && gerr == nil
}

// userString is the CRI's generateUserString: (none) -> "", username ->
// username, uid -> uid, either with gid -> "user:gid", a gid alone is an error.
func userString(username string, uid, gid *int64) (string, error) {
	var userstr, groupstr string
	if uid != nil {
		userstr = strconv.FormatInt(*uid, 10)
	}
	if username != "" {
		userstr = username
	}
	if gid != nil {
		groupstr = strconv.FormatInt(*gid, 10)
	}
	if userstr == "" {
		if groupstr != "" {
			return "", fmt.Errorf("user group %q is specified without user", groupstr)
		}
		return "", nil
	}
	if groupstr != "" {
		userstr += ":" + groupstr
	}
	return userstr, nil
}

// withRootfs applies opts, which read the image's /etc/passwd or /etc/group,
// on a single read-only temporary mount of the container's snapshot: each
// of oci's user options would mount it once on its own. They see a
// container without a snapshot and the mount as the spec's root, which is
// how oci's options read an absolute rootfs.
func withRootfs(opts ...oci.SpecOpts) oci.SpecOpts {
	return func(ctx context.Context, cl oci.Client, c *containers.Container, s *specs.Spec) error {
		if c.Snapshotter == "" || c.SnapshotKey == "" {
			return oci.Compose(opts...)(ctx, cl, c, s) // a rootfs path of its own (tests)
		}
		mounts, err := cl.SnapshotService(c.Snapshotter).Mounts(ctx, c.SnapshotKey)
		if err != nil {
			return fmt.Errorf("mounts of the snapshot: %w", err)
		}
		return mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
			if s.Root == nil {
				s.Root = &specs.Root{}
			}
			path := s.Root.Path
			s.Root.Path = root
			defer func() { s.Root.Path = path }()
			bare := &containers.Container{ID: c.ID, Labels: c.Labels}
			return oci.Compose(opts...)(ctx, cl, bare, s)
		})
	}
}

// withAdditionalGIDs is the CRI's WithAdditionalGIDs: the groups the image's
// /etc/group lists the user in, merged with those already set.
func withAdditionalGIDs(userstr string) oci.SpecOpts {
	return func(ctx context.Context, cl oci.Client, c *containers.Container, s *specs.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		gids := s.Process.User.AdditionalGids
		if err := oci.WithAdditionalGIDs(userstr)(ctx, cl, c, s); err != nil {
			return err
		}
		s.Process.User.AdditionalGids = mergeGids(s.Process.User.AdditionalGids, gids)
		return nil
	}
}

// withSupplementalGroups is the CRI's WithSupplementalGroups.
func withSupplementalGroups(groups []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		gids := make([]uint32, 0, len(groups))
		for _, g := range groups {
			gids = append(gids, uint32(g))
		}
		s.Process.User.AdditionalGids = mergeGids(s.Process.User.AdditionalGids, gids)
		return nil
	}
}

// mergeGids returns the union of a and b, sorted.
func mergeGids(a, b []uint32) []uint32 {
	out := slices.Concat(a, b)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return slices.Compact(out)
}

// withCapabilities is the CRI's WithCapabilities: "ALL" added (every
// capability this process has) or dropped first, so that individual adds
// and drops still apply after it; names get the "CAP_" prefix.
func withCapabilities(c *runtimeapi.Capabilities) oci.SpecOpts {
	all := func(list []string) bool {
		return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(s, "ALL") })
	}
	prefixed := func(list []string) []string {
		out := []string{}
		for _, s := range list {
			if !strings.EqualFold(s, "ALL") {
				out = append(out, "CAP_"+strings.ToUpper(s))
			}
		}
		return out
	}
	var opts []oci.SpecOpts
	if all(c.Add) {
		opts = append(opts, oci.WithAllCurrentCapabilities)
	}
	if all(c.Drop) {
		opts = append(opts, oci.WithCapabilities(nil))
	}
	opts = append(opts, oci.WithAddedCapabilities(prefixed(c.Add)), oci.WithDroppedCapabilities(prefixed(c.Drop)))
	return oci.Compose(opts...)
}

func withoutAmbientCaps(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	if s.Process != nil && s.Process.Capabilities != nil {
		s.Process.Capabilities.Ambient = nil
	}
	return nil
}

// seccompOpts is the CRI's generateSeccompSpecOpts: no profile for a
// privileged container or Unconfined, containerd's default profile
// (contrib/seccomp, built for the container's capabilities) for
// RuntimeDefault, a JSON profile read from a file on the node for Localhost.
func seccompOpts(p runtimeapi.SecurityProfile, privileged bool) (oci.SpecOpts, error) {
	if privileged {
		return nil, nil
	}
	if p.Type != runtimeapi.ProfileLocalhost && p.LocalhostRef != "" {
		return nil, errors.New("seccomp config invalid LocalhostRef must only be set if ProfileType is Localhost")
	}
	switch p.Type {
	case "", runtimeapi.ProfileUnconfined:
		return nil, nil
	case runtimeapi.ProfileRuntimeDefault:
		return seccomp.WithDefaultProfile(), nil
	case runtimeapi.ProfileLocalhost:
		return seccomp.WithProfile(strings.TrimPrefix(p.LocalhostRef, "localhost/")), nil
	}
	return nil, fmt.Errorf("seccomp unknown ProfileType %q", p.Type)
}

// withUserLabel records the resolved user of spec (filled by the spec
// options that ran before) in the container's labels.
func withUserLabel(user *specs.User) client.NewContainerOpts {
	return func(_ context.Context, _ *client.Client, c *containers.Container) error {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		groups := make([]string, 0, len(user.AdditionalGids))
		for _, g := range user.AdditionalGids {
			groups = append(groups, strconv.FormatUint(uint64(g), 10))
		}
		c.Labels[labelUser] = fmt.Sprintf("%d:%d:%s", user.UID, user.GID, strings.Join(groups, ","))
		return nil
	}
}

// captureUser copies the spec's process user into user once the spec is complete.
func captureUser(user *specs.User) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Process != nil {
			*user = s.Process.User
		}
		return nil
	}
}

// parseUserLabel reads labelUser back; nil when absent or unreadable (a
// container created before it existed).
func parseUserLabel(v string) *runtimeapi.ContainerUser {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 {
		return nil
	}
	uid, uerr := strconv.ParseInt(parts[0], 10, 64)
	gid, gerr := strconv.ParseInt(parts[1], 10, 64)
	if uerr != nil || gerr != nil {
		return nil
	}
	u := &runtimeapi.ContainerUser{UID: uid, GID: gid}
	if parts[2] != "" {
		for _, g := range strings.Split(parts[2], ",") {
			n, err := strconv.ParseInt(g, 10, 64)
			if err != nil {
				return nil
			}
			u.SupplementalGroups = append(u.SupplementalGroups, n)
		}
	}
	return u
}
