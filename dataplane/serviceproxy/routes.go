package serviceproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ensureServiceRoutes routes each Service range to ServiceDevice: a
// persistent TUN device that no process reads, so it has no carrier and
// drops whatever is sent to it. A packet for a cluster IP that no rule
// DNATed therefore stays on the machine instead of following the default
// route.
//
// Why not a blackhole or unreachable route (as some network plugins use):
// the route lookup a local socket makes at connect() time fails on those
// (EINVAL, EHOSTUNREACH) before any packet exists, so the node's own
// connections to cluster IPs would fail before the nat output hook could
// DNAT them. A route through a device lets the packet be built; the output
// hook DNATs it and the kernel routes it again to the endpoint. A dummy
// device (kube-proxy's IPVS mode, kube-ipvs0) would do as well, but the
// dummy driver is not in every kernel (it is not in this machine's); TUN
// is. The route is flagged linkdown; it is only skipped where
// ignore_routes_with_linkdown is set, which a sync refuses.
func (p *Proxier) ensureServiceRoutes() error {
	return ensureServiceRoutes(p.cfg.ServiceCIDRs, p.cfg.ServiceDevice)
}

// RouteServiceRanges routes cfg.ServiceCIDRs to cfg.ServiceDevice (default
// DefaultServiceDevice) in cfg.NetNS now, as every full sync of a Proxier
// does: for a program to call before anything can create a Service
// (`logplane up` calls it before its API server serves, `logplane agent`
// before it follows the log), so that no cluster IP leaves the machine in
// the moment before the Proxier's first sync. Harmless when already done;
// the Proxier keeps the routes from then on, Cleanup removes them.
func RouteServiceRanges(cfg Config) error {
	if cfg.ServiceDevice == "" {
		cfg.ServiceDevice = DefaultServiceDevice
	}
	if err := inNetNS(cfg.NetNS, func() error { return ensureServiceRoutes(cfg.ServiceCIDRs, cfg.ServiceDevice) }); err != nil {
		return fmt.Errorf("serviceproxy: %w", err)
	}
	return nil
}

func ensureServiceRoutes(cidrs []netip.Prefix, device string) error {
	if len(cidrs) == 0 {
		return nil
	}
	for _, name := range []string{"all", device} {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + name + "/ignore_routes_with_linkdown")
		if err == nil && strings.TrimSpace(string(b)) != "0" {
			return fmt.Errorf("net.ipv4.conf.%s.ignore_routes_with_linkdown is set: the route of the Service range through %s would be ignored", name, device)
		}
	}
	link, err := netlink.LinkByName(device)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		tun := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: device}, Mode: netlink.TUNTAP_MODE_TUN}
		if err := netlink.LinkAdd(tun); err != nil {
			return fmt.Errorf("create %s: %w", device, err)
		}
		link, err = netlink.LinkByName(device)
	}
	if err != nil {
		return fmt.Errorf("device %s: %w", device, err)
	}
	if link.Type() != "tuntap" {
		return fmt.Errorf("device %s exists and is a %s, not the TUN device serviceproxy makes", device, link.Type())
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", device, err)
		}
	}
	want := map[string]bool{}
	for _, c := range cidrs {
		c = c.Masked()
		want[c.String()] = true
		_, dst, _ := net.ParseCIDR(c.String()) // a netip.Prefix always parses
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s dev %s: %w", c, device, err)
		}
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", device, err)
	}
	for _, r := range routes {
		if r.Dst != nil && !want[r.Dst.String()] {
			if err := netlink.RouteDel(&r); err != nil {
				return fmt.Errorf("remove stale route %s: %w", r.Dst, err)
			}
		}
	}
	return nil
}

// removeServiceDevice deletes the device and, with it, its routes.
func removeServiceDevice(name string) error {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if link.Type() != "tuntap" {
		return fmt.Errorf("device %s is a %s, not serviceproxy's TUN device: left alone", name, link.Type())
	}
	return netlink.LinkDel(link)
}
