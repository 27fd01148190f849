package endpoints

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"hash"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/dump"
)

// RepackSubsets merges subsets with the same addresses and ports into the fewest subsets, in a
// canonical order (Kubernetes' pkg/api/v1/endpoints.RepackSubsets): an address ready for one
// port and not ready for another is not ready for both.
func RepackSubsets(subsets []corev1.EndpointSubset) []corev1.EndpointSubset {
	allAddrs := map[addressKey]*corev1.EndpointAddress{}
	portToAddrReady := map[corev1.EndpointPort]addressSet{}
	for i := range subsets {
		if len(subsets[i].Ports) == 0 {
			mapAddressesByPort(&subsets[i], corev1.EndpointPort{Port: -1}, allAddrs, portToAddrReady)
			continue
		}
		for _, port := range subsets[i].Ports {
			mapAddressesByPort(&subsets[i], port, allAddrs, portToAddrReady)
		}
	}
	keyToAddrReady := map[string]addressSet{}
	keyToPorts := map[string][]corev1.EndpointPort{}
	for port, addrs := range portToAddrReady {
		key := hashAddresses(addrs)
		keyToAddrReady[key] = addrs
		if port.Port > 0 {
			keyToPorts[key] = append(keyToPorts[key], port)
		} else if _, ok := keyToPorts[key]; !ok {
			keyToPorts[key] = nil
		}
	}
	final := []corev1.EndpointSubset{}
	for key, ports := range keyToPorts {
		var ready, notReady []corev1.EndpointAddress
		for addr, isReady := range keyToAddrReady[key] {
			if isReady {
				ready = append(ready, *addr)
			} else {
				notReady = append(notReady, *addr)
			}
		}
		final = append(final, corev1.EndpointSubset{Addresses: ready, NotReadyAddresses: notReady, Ports: ports})
	}
	return sortSubsets(final)
}

type addressKey struct {
	ip  string
	uid types.UID
}

type addressSet map[*corev1.EndpointAddress]bool

func mapAddressesByPort(s *corev1.EndpointSubset, port corev1.EndpointPort, all map[addressKey]*corev1.EndpointAddress, m map[corev1.EndpointPort]addressSet) {
	for k := range s.Addresses {
		mapAddressByPort(&s.Addresses[k], port, true, all, m)
	}
	for k := range s.NotReadyAddresses {
		mapAddressByPort(&s.NotReadyAddresses[k], port, false, all, m)
	}
}

func mapAddressByPort(addr *corev1.EndpointAddress, port corev1.EndpointPort, ready bool, all map[addressKey]*corev1.EndpointAddress, m map[corev1.EndpointPort]addressSet) {
	key := addressKey{ip: addr.IP}
	if addr.TargetRef != nil {
		key.uid = addr.TargetRef.UID
	}
	existing := all[key]
	if existing == nil {
		existing = &corev1.EndpointAddress{}
		*existing = *addr
		all[key] = existing
	}
	if _, ok := m[port]; !ok {
		m[port] = addressSet{}
	}
	if wasReady, ok := m[port][existing]; !ok || wasReady {
		m[port][existing] = ready
	}
}

type addrReady struct {
	addr  *corev1.EndpointAddress
	ready bool
}

func hashAddresses(addrs addressSet) string {
	list := make([]addrReady, 0, len(addrs))
	for a, r := range addrs {
		list = append(list, addrReady{a, r})
	}
	sort.Slice(list, func(i, j int) bool { return lessEndpointAddress(list[i].addr, list[j].addr) })
	h := md5.New()
	deepHash(h, list)
	return hex.EncodeToString(h.Sum(nil))
}

func lessEndpointAddress(a, b *corev1.EndpointAddress) bool {
	if c := bytes.Compare([]byte(a.IP), []byte(b.IP)); c != 0 {
		return c < 0
	}
	if b.TargetRef == nil {
		return false
	}
	if a.TargetRef == nil {
		return true
	}
	return a.TargetRef.UID < b.TargetRef.UID
}

func sortSubsets(subsets []corev1.EndpointSubset) []corev1.EndpointSubset {
	for i := range subsets {
		s := &subsets[i]
		sort.Slice(s.Addresses, func(a, b int) bool { return lessEndpointAddress(&s.Addresses[a], &s.Addresses[b]) })
		sort.Slice(s.NotReadyAddresses, func(a, b int) bool {
			return lessEndpointAddress(&s.NotReadyAddresses[a], &s.NotReadyAddresses[b])
		})
		sort.Slice(s.Ports, func(a, b int) bool { return hashLess(s.Ports[a], s.Ports[b]) })
	}
	sort.Slice(subsets, func(a, b int) bool { return hashLess(subsets[a], subsets[b]) })
	return subsets
}

func hashLess(a, b any) bool {
	ha, hb := md5.New(), md5.New()
	deepHash(ha, a)
	deepHash(hb, b)
	return bytes.Compare(ha.Sum(nil), hb.Sum(nil)) < 0
}

// deepHash writes obj's deep dump (pointers followed) into h, as Kubernetes' DeepHashObject.
func deepHash(h hash.Hash, obj any) {
	h.Reset()
	_, _ = h.Write([]byte(dump.ForHash(obj)))
}
