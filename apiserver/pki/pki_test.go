package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logplane/logplane/apiserver/pki"
)

// TestDamagedFilesAreMadeAgainKeepingTheIdentity empties the files a power loss empties when they
// were written without fsync (the issue found every file of pki/ empty) except the CA key: Load
// makes them again, says which, and the cluster keeps its identity: a client certificate issued
// before verifies against the new CA certificate, and the new server certificate against the old.
func TestDamagedFilesAreMadeAgainKeepingTheIdentity(t *testing.T) {
	dir := t.TempDir()
	before, err := pki.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	oldAdmin := readCert(t, filepath.Join(dir, "admin.crt"))
	for _, f := range []string{"ca.crt", "server.crt", "server.key", "admin.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	after, err := pki.Load(dir)
	if err != nil {
		t.Fatalf("Load on damaged files: %v", err)
	}
	joined := strings.Join(after.Remade, "\n")
	for _, f := range []string{"ca.crt", "server.crt", "admin.crt"} {
		if !strings.Contains(joined, filepath.Join(dir, f)) {
			t.Errorf("Remade does not name %s: %q", f, after.Remade)
		}
	}
	if !after.CA.Key.Equal(before.CA.Key) {
		t.Fatal("the CA key changed")
	}
	newPool, oldPool := x509.NewCertPool(), x509.NewCertPool()
	newPool.AddCert(after.CA.Cert)
	oldPool.AddCert(before.CA.Cert)
	if _, err := oldAdmin.Verify(x509.VerifyOptions{Roots: newPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("a client certificate issued before does not verify against the new CA certificate: %v", err)
	}
	server := readCert(t, filepath.Join(dir, "server.crt"))
	if _, err := server.Verify(x509.VerifyOptions{Roots: oldPool, DNSName: "localhost"}); err != nil {
		t.Errorf("the new server certificate does not verify against the old CA certificate: %v", err)
	}
	if again, err := pki.Load(dir); err != nil || len(again.Remade) != 0 {
		t.Errorf("a third Load remade %q (err %v), want nothing", again.Remade, err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := after.WriteKubeconfig(kubeconfig, "https://127.0.0.1:6443"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(kubeconfig); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("kubeconfig: %v, %v", fi, err)
	}
}

// TestDamagedCAKeyIsAnErrorThatSaysWhatToDo: the CA key cannot be made again without a new
// cluster identity, so Load refuses and names the file and the ways out.
func TestDamagedCAKeyIsAnErrorThatSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Load(dir); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"", "garbage"} {
		if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := pki.Load(dir)
		if err == nil {
			t.Fatalf("Load with ca.key %q succeeded", content)
		}
		for _, want := range []string{filepath.Join(dir, "ca.key"), "damaged", "backup", "move " + dir + " aside"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	}
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Load(dir); err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Errorf("Load with ca.crt but no ca.key: %v, want an error saying the key is missing", err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s is not PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
