package containerd_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/ociimage"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// appImage pushes busybox running as "app" (uid 1000, primary group 1000,
// and a member of group extra, 3000, in /etc/group) and returns its reference.
func appImage(t *testing.T, e *dataplanetest.Env, user string) string {
	t.Helper()
	bb, _ := dataplanetest.Images(t)
	img, err := ociimage.WithUser(bb, user,
		"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n",
		"root:x:0:\napp:x:1000:\nextra:x:3000:app\n")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := e.Registry.Push(t.Context(), "logplane/busybox-app:"+strings.ReplaceAll(user, ":", "-"), img)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// shell runs a shell script in a container and returns its output (stdout and stderr).
func shell(t *testing.T, rt *containerd.Runtime, id, script string) string {
	t.Helper()
	var out bytes.Buffer
	if _, err := rt.Exec(t.Context(), id, runtimeapi.ExecOptions{Cmd: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out}); err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return out.String()
}

// status returns the status line name of /proc/self/status inside the container.
func procStatus(t *testing.T, rt *containerd.Runtime, id, name string) string {
	t.Helper()
	out := shell(t, rt, id, "grep '^"+name+":' /proc/self/status")
	_, v, _ := strings.Cut(strings.TrimSpace(out), ":")
	return strings.TrimSpace(v)
}

func ptr[T any](v T) *T { return &v }

// defaultCaps is CapEff of a root process with the CRI's default capabilities
// (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
// NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP).
const defaultCaps = "00000000a80425fb"

// TestSecurityContext runs containers with the security contexts the CRI
// passes, on a real containerd, and looks from inside.
func TestSecurityContext(t *testing.T) {
	e := dataplanetest.New(t)
	rt := e.Runtime
	sleep := func(name string, sc runtimeapi.SecurityContext, mounts ...runtimeapi.Mount) runtimeapi.ContainerConfig {
		return runtimeapi.ContainerConfig{Name: name, Image: e.Busybox, Command: []string{"sleep", "3600"}, Security: sc, Mounts: mounts}
	}
	user := func(t *testing.T, id string) *runtimeapi.ContainerUser {
		t.Helper()
		st, err := rt.ContainerStatus(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return st.User
	}

	t.Run("defaults are the CRI's", func(t *testing.T) {
		id := run(t, rt, sandbox(t, e, "sec-default"), sleep("c", runtimeapi.SecurityContext{}))
		if got := shell(t, rt, id, "id"); got != "uid=0(root) gid=0(root) groups=0(root)\n" {
			t.Errorf("id: %q", got)
		}
		// Privilege escalation is allowed and there is no seccomp filter unless asked, as in Kubernetes.
		for name, want := range map[string]string{"NoNewPrivs": "0", "Seccomp": "0", "CapEff": defaultCaps, "CapBnd": defaultCaps} {
			if got := procStatus(t, rt, id, name); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		if u := user(t, id); u == nil || u.UID != 0 || u.GID != 0 || !slices.Equal(u.SupplementalGroups, []int64{0}) {
			t.Errorf("status user %+v", u)
		}
	})

	t.Run("user, group and supplemental groups", func(t *testing.T) {
		id := run(t, rt, sandbox(t, e, "sec-user"), sleep("c", runtimeapi.SecurityContext{
			RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000)), SupplementalGroups: []int64{4000, 5000},
		}))
		if got := shell(t, rt, id, "id"); got != "uid=1000 gid=3000 groups=3000,4000,5000\n" {
			t.Errorf("id: %q", got)
		}
		// A non-root process has no effective capabilities.
		if got := procStatus(t, rt, id, "CapEff"); got != "0000000000000000" {
			t.Errorf("CapEff %q", got)
		}
		if u := user(t, id); u == nil || u.UID != 1000 || u.GID != 3000 || !slices.Equal(u.SupplementalGroups, []int64{3000, 4000, 5000}) {
			t.Errorf("status user %+v", u)
		}
	})

	t.Run("image user and its groups, Merge and Strict", func(t *testing.T) {
		img := appImage(t, e, "app")
		cfg := sleep("c", runtimeapi.SecurityContext{SupplementalGroups: []int64{4000}})
		cfg.Image = img
		// The image's user, looked up in its /etc/passwd; its groups in /etc/group are added (Merge).
		id := run(t, rt, sandbox(t, e, "sec-merge"), cfg)
		if got := shell(t, rt, id, "id"); got != "uid=1000(app) gid=1000(app) groups=1000(app),3000(extra),4000\n" {
			t.Errorf("Merge: id %q", got)
		}
		// Strict: only the primary group and the ones asked for.
		cfg.Security.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsStrict
		id = run(t, rt, sandbox(t, e, "sec-strict"), cfg)
		if got := shell(t, rt, id, "id"); got != "uid=1000(app) gid=1000(app) groups=1000(app),4000\n" {
			t.Errorf("Strict: id %q", got)
		}
		// A numeric uid:gid: Merge still reads /etc/group, Strict reads nothing of the image.
		cfg.Security = runtimeapi.SecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(5000)), SupplementalGroups: []int64{4000}}
		id = run(t, rt, sandbox(t, e, "sec-uidgid-merge"), cfg)
		if got := shell(t, rt, id, "id"); got != "uid=1000(app) gid=5000 groups=3000(extra),4000,5000\n" {
			t.Errorf("uid:gid, Merge: id %q", got)
		}
		cfg.Security.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsStrict
		id = run(t, rt, sandbox(t, e, "sec-uidgid-strict"), cfg)
		if got := shell(t, rt, id, "id"); got != "uid=1000(app) gid=5000 groups=4000,5000\n" {
			t.Errorf("uid:gid, Strict: id %q", got)
		}
		// runAsUser as the kubelet passes it for a numeric image user: the group comes from /etc/passwd.
		cfg = sleep("c", runtimeapi.SecurityContext{RunAsUser: ptr(int64(1000))})
		cfg.Image = appImage(t, e, "1000:1000")
		id = run(t, rt, sandbox(t, e, "sec-numeric"), cfg)
		if got := shell(t, rt, id, "id"); got != "uid=1000(app) gid=1000(app) groups=1000(app),3000(extra)\n" {
			t.Errorf("numeric: id %q", got)
		}
		// A user name the image does not know fails the create.
		cfg = sleep("c", runtimeapi.SecurityContext{RunAsUsername: "nobody-here"})
		sb := sandbox(t, e, "sec-nouser")
		if _, err := rt.CreateContainer(t.Context(), sb.ID, cfg); err == nil || !strings.Contains(err.Error(), "no users found") {
			t.Errorf("unknown user: %v", err)
		}
		// A group without a user is refused, as by the CRI plugin.
		cfg = sleep("c", runtimeapi.SecurityContext{RunAsGroup: ptr(int64(5))})
		if _, err := rt.CreateContainer(t.Context(), sb.ID, cfg); err == nil || !strings.Contains(err.Error(), `user group "5" is specified without user`) {
			t.Errorf("group without user: %v", err)
		}
	})

	t.Run("read-only root filesystem", func(t *testing.T) {
		data := t.TempDir()
		id := run(t, rt, sandbox(t, e, "sec-ro"), sleep("c", runtimeapi.SecurityContext{ReadonlyRootfs: true},
			runtimeapi.Mount{HostPath: data, ContainerPath: "/data"}))
		got := shell(t, rt, id, "touch /x 2>&1; touch /etc/hosts 2>&1; touch /data/f && echo data ok")
		want := "touch: /x: Read-only file system\ntouch: /etc/hosts: Read-only file system\ndata ok\n"
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if _, err := os.Stat(filepath.Join(data, "f")); err != nil {
			t.Error(err)
		}
	})

	t.Run("capabilities", func(t *testing.T) {
		sb := sandbox(t, e, "sec-caps")
		drop := run(t, rt, sb, sleep("drop", runtimeapi.SecurityContext{Capabilities: &runtimeapi.Capabilities{Drop: []string{"ALL"}}}))
		if got := procStatus(t, rt, drop, "CapEff"); got != "0000000000000000" {
			t.Errorf("drop ALL: CapEff %q", got)
		}
		if got := shell(t, rt, drop, "touch /tmp/f; chown 1 /tmp/f 2>&1"); got != "chown: /tmp/f: Operation not permitted\n" {
			t.Errorf("drop ALL: chown %q", got)
		}
		// The default set lacks NET_ADMIN: changing a link fails, until it is added.
		def := run(t, rt, sb, sleep("default", runtimeapi.SecurityContext{}))
		if got := shell(t, rt, def, "ip link set lo mtu 1500 2>&1"); !strings.Contains(got, "Operation not permitted") {
			t.Errorf("default: ip link %q", got)
		}
		add := run(t, rt, sb, sleep("add", runtimeapi.SecurityContext{Capabilities: &runtimeapi.Capabilities{Add: []string{"NET_ADMIN"}, Drop: []string{"chown"}}}))
		if got := shell(t, rt, add, "ip link set lo mtu 1500 && echo ok"); got != "ok\n" {
			t.Errorf("NET_ADMIN: ip link %q", got)
		}
		// NET_ADMIN is bit 12, CHOWN bit 0.
		if got := procStatus(t, rt, add, "CapEff"); got != "00000000a80435fa" {
			t.Errorf("add NET_ADMIN, drop chown: CapEff %q", got)
		}
		all := run(t, rt, sb, sleep("all", runtimeapi.SecurityContext{Capabilities: &runtimeapi.Capabilities{Add: []string{"ALL"}, Drop: []string{"NET_ADMIN"}}}))
		host := hostCapBnd(t)
		if got := procStatus(t, rt, all, "CapEff"); got != clearBit(t, host, 12) {
			t.Errorf("add ALL, drop NET_ADMIN: CapEff %q, host %s", got, host)
		}
	})

	t.Run("no new privileges", func(t *testing.T) {
		id := run(t, rt, sandbox(t, e, "sec-nnp"), sleep("c", runtimeapi.SecurityContext{NoNewPrivs: true}))
		if got := procStatus(t, rt, id, "NoNewPrivs"); got != "1" {
			t.Errorf("NoNewPrivs %q", got)
		}
	})

	t.Run("seccomp", func(t *testing.T) {
		sb := sandbox(t, e, "sec-seccomp")
		// unshare(2) needs no capability for a user namespace: only a seccomp filter stops it.
		unconfined := run(t, rt, sb, sleep("unconfined", runtimeapi.SecurityContext{Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileUnconfined}}))
		if got := shell(t, rt, unconfined, "unshare -U true && echo ok"); got != "ok\n" {
			t.Errorf("Unconfined: unshare %q", got)
		}
		def := run(t, rt, sb, sleep("default", runtimeapi.SecurityContext{Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileRuntimeDefault}}))
		if got := procStatus(t, rt, def, "Seccomp"); got != "2" {
			t.Errorf("RuntimeDefault: Seccomp %q", got)
		}
		if got := shell(t, rt, def, "unshare -U true 2>&1"); !strings.Contains(got, "Operation not permitted") {
			t.Errorf("RuntimeDefault: unshare %q", got)
		}
		// Localhost: a profile file on the node, here one that refuses mkdir.
		profile := filepath.Join(t.TempDir(), "no-mkdir.json")
		if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		local := run(t, rt, sb, sleep("local", runtimeapi.SecurityContext{Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileLocalhost, LocalhostRef: profile}}))
		if got := shell(t, rt, local, "mkdir /tmp/d 2>&1; touch /tmp/f && echo touch ok"); got != "mkdir: can't create directory '/tmp/d': Operation not permitted\ntouch ok\n" {
			t.Errorf("Localhost: %q", got)
		}
		missing := sleep("missing", runtimeapi.SecurityContext{Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileLocalhost, LocalhostRef: profile + ".absent"}})
		if _, err := rt.CreateContainer(t.Context(), sb.ID, missing); err == nil || !strings.Contains(err.Error(), "cannot load seccomp profile") {
			t.Errorf("missing profile: %v", err)
		}
	})

	t.Run("privileged", func(t *testing.T) {
		id := run(t, rt, sandbox(t, e, "sec-priv"), sleep("c", runtimeapi.SecurityContext{
			Privileged: true, Seccomp: runtimeapi.SecurityProfile{Type: runtimeapi.ProfileRuntimeDefault},
		}))
		host := hostCapBnd(t)
		for name, want := range map[string]string{"CapEff": host, "CapBnd": host, "Seccomp": "0"} {
			if got := procStatus(t, rt, id, name); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		// /sys is writable, /proc/sys is not read-only any more, the host's devices are there.
		mounts := shell(t, rt, id, "grep -E ' /sys | /proc/sys ' /proc/mounts; ls /dev/kmsg")
		if !regexp.MustCompile(`(?m)^sysfs /sys sysfs rw,`).MatchString(mounts) || strings.Contains(mounts, " /proc/sys ") || !strings.Contains(mounts, "/dev/kmsg") {
			t.Errorf("mounts and devices:\n%s", mounts)
		}
	})
}

// hostCapBnd is the capability bounding set of this (root) process.
func hostCapBnd(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CapBnd:\s*([0-9a-f]+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no CapBnd in /proc/self/status")
	}
	return string(m[1])
}

func clearBit(t *testing.T, hex string, bit uint) string {
	t.Helper()
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%016x", v&^(1<<bit))
}
