//! Building test packets with etherparse and checking what the programs made of them.

use std::net::Ipv4Addr;

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The node's MAC as BPF_PROG_TEST_RUN sees it: the run's device is lo, whose address is all
/// zeros, and a frame to any other unicast MAC would count as another host's (PACKET_OTHERHOST).
pub const NODE_MAC: [u8; 6] = [0; 6];

pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: &str, seq: u32, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 64240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(1000) } else { b };
    let b = if flags.contains('F') { b.fin() } else { b };
    let b = if flags.contains('R') { b.rst() } else { b };
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build tcp packet");
    out
}

pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC).ipv4(src.0.octets(), dst.0.octets(), 64).udp(src.1, dst.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build udp packet");
    out
}

pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(id, seq);
    let payload = b"cilia-ping-payload";
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build icmp packet");
    out
}

/// An ICMP error from `src` to `dst` quoting `quoted` (an IPv4 packet without Ethernet header),
/// as a host sends it about a packet it could not take.
pub fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, kind: etherparse::Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC).ipv4(src.octets(), dst.octets(), 64).icmpv4(kind);
    let mut out = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut out, quoted).expect("build icmp error");
    out
}

/// The IPv4 packet inside an Ethernet frame (what an ICMP error quotes).
pub fn ip_part(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// What the tests look at in an output packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
    pub ttl: u8,
    pub proto: u8,
    pub tcp_flags: Option<(bool, bool)>, // (rst, ack)
    pub seq_ack: Option<(u32, u32)>,
    pub icmp: Option<(u8, u8)>,
    pub payload: Vec<u8>,
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
}

/// One's-complement sum over `data` (RFC 1071), for an independent checksum check.
fn ones_sum(data: &[u8], mut sum: u32) -> u32 {
    for chunk in data.chunks(2) {
        let word =
            if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { u16::from_be_bytes([chunk[0], 0]) };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Parses an output frame and asserts that every checksum in it is right, computed both by
/// etherparse and by a plain RFC 1071 sum.
pub fn parse_checked(frame: &[u8]) -> Seen {
    let h =
        PacketHeaders::from_ethernet_slice(frame).unwrap_or_else(|e| panic!("unparsable output {e:?}: {frame:02x?}"));
    let eth = h.link.clone().and_then(|l| l.ethernet2()).expect("ethernet header");
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else { panic!("no IPv4 header in {frame:02x?}") };
    assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IPv4 header checksum");
    let ip_bytes = &frame[14..14 + ip.header_len()];
    assert_eq!(ones_sum(ip_bytes, 0), 0xffff, "IPv4 header sums to all ones");
    let l4 = &frame[14 + ip.header_len()..14 + usize::from(ip.total_len)];
    let pseudo = |proto: u8, len: usize| {
        let mut p = Vec::new();
        p.extend_from_slice(&ip.source);
        p.extend_from_slice(&ip.destination);
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
        ones_sum(&p, 0)
    };
    let payload = h.payload.slice().to_vec();
    let src_ip = Ipv4Addr::from(ip.source);
    let dst_ip = Ipv4Addr::from(ip.destination);
    let mut seen = Seen {
        src: (src_ip, 0),
        dst: (dst_ip, 0),
        ttl: ip.time_to_live,
        proto: ip.protocol.0,
        tcp_flags: None,
        seq_ack: None,
        icmp: None,
        payload: payload.clone(),
        eth_src: eth.source,
        eth_dst: eth.destination,
    };
    match &h.transport {
        Some(TransportHeader::Tcp(t)) => {
            assert_eq!(t.checksum, t.calc_checksum_ipv4(ip, &payload).unwrap(), "TCP checksum (etherparse)");
            assert_eq!(ones_sum(l4, pseudo(6, l4.len())), 0xffff, "TCP checksum (RFC 1071)");
            seen.src.1 = t.source_port;
            seen.dst.1 = t.destination_port;
            seen.tcp_flags = Some((t.rst, t.ack));
            seen.seq_ack = Some((t.sequence_number, t.acknowledgment_number));
        }
        Some(TransportHeader::Udp(u)) => {
            if u.checksum != 0 {
                assert_eq!(u.checksum, u.calc_checksum_ipv4(ip, &payload).unwrap(), "UDP checksum (etherparse)");
                assert_eq!(ones_sum(l4, pseudo(17, l4.len())), 0xffff, "UDP checksum (RFC 1071)");
            }
            seen.src.1 = u.source_port;
            seen.dst.1 = u.destination_port;
        }
        Some(TransportHeader::Icmpv4(i)) => {
            assert_eq!(ones_sum(l4, 0), 0xffff, "ICMP checksum (RFC 1071)");
            let bytes = i.to_bytes();
            seen.icmp = Some((bytes[0], bytes[1]));
        }
        other => panic!("unexpected transport {other:?}"),
    }
    seen
}
