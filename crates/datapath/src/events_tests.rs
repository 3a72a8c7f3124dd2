use super::*;

/// A trace record as `bpf/lib/events.h` writes it on x86_64 (little endian): from_container of a
/// pod 10.0.1.5:40372 sending a SYN to the ClusterIP 10.96.0.10:80, DNATed to the backend
/// 10.0.2.7:8080 behind the overlay and encapsulated there (to-overlay), on ifindex 7.
const TRACE_TO_OVERLAY: [u8; 48] = [
    0x00, 0xe1, 0xf5, 0x05, 0x00, 0x00, 0x00, 0x00, // ts_ns = 100 000 000
    0x04, 0x04, 0x00, 0x26, // trace, to-overlay, no reason, NOT_REPLY | DNAT | ENCAP
    0x07, 0x00, 0x00, 0x00, // ifindex 7
    0x4a, 0x00, 0x00, 0x00, // 74 bytes
    10, 0, 1, 5, 10, 0, 2, 7, // 10.0.1.5 -> 10.0.2.7
    0x9d, 0xb4, 0x1f, 0x90, // 40372 -> 8080
    0x06, 0x02, 0x00, 0x00, // TCP, SYN
    10, 96, 0, 10, 0x00, 0x50, 0x00, 0x00, // frontend 10.96.0.10:80
    0x00, 0x00, 0x00, 0x00, // out_ifindex
];

/// A drop record: a pod's UDP datagram to a frontend without backends (reason 158).
const DROP_NO_SERVICE: [u8; 48] = [
    0x40, 0x42, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, // ts_ns = 1 000 000
    0x01, 0x00, 0x9e, 0x00, // drop, -, 158, no flags
    0x03, 0x00, 0x00, 0x00, // ifindex 3
    0x2a, 0x00, 0x00, 0x00, // 42 bytes
    10, 0, 1, 5, 10, 96, 0, 99, // 10.0.1.5 -> 10.96.0.99
    0x30, 0x39, 0x00, 0x35, // 12345 -> 53
    0x11, 0x00, 0x00, 0x00, // UDP
    0, 0, 0, 0, 0, 0, 0, 0, //
    0, 0, 0, 0,
];

#[test]
fn a_trace_record_decodes_and_encodes_back_to_the_same_bytes() {
    let ev = FlowEvent::parse(&TRACE_TO_OVERLAY).unwrap();
    assert_eq!(ev.monotonic_ns, 100_000_000);
    assert_eq!(ev.kind, EventKind::Trace);
    assert_eq!(ev.trace_point(), Some(ObservationPoint::ToOverlay));
    assert_eq!(ev.drop_reason(), None);
    assert_eq!(ev.ifindex, 7);
    assert_eq!(ev.pkt_len, 74);
    assert_eq!((ev.saddr, ev.sport), (Ipv4Addr::new(10, 0, 1, 5), 40372));
    assert_eq!((ev.daddr, ev.dport), (Ipv4Addr::new(10, 0, 2, 7), 8080));
    assert_eq!(ev.proto, 6);
    assert_eq!(tcp_flag_names(ev.tcp_flags), ["SYN"]);
    assert_eq!(ev.is_reply(), Some(false));
    assert!(ev.encapsulated());
    assert!(!ev.truncated());
    assert_eq!(ev.translation(), Some(Translation::Dnat(SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 80))));
    assert_eq!(ev.to_bytes(), TRACE_TO_OVERLAY);
}

#[test]
fn a_drop_record_decodes_with_its_reason_and_encodes_back() {
    let ev = FlowEvent::parse(&DROP_NO_SERVICE).unwrap();
    assert_eq!(ev.kind, EventKind::Drop);
    assert_eq!(ev.drop_reason(), Some(DropReason::NO_SERVICE));
    assert_eq!(ev.drop_reason().unwrap().description(), "Service backend not found");
    assert_eq!(ev.drop_reason().unwrap().proto_name(), "SERVICE_BACKEND_NOT_FOUND");
    assert_eq!(ev.trace_point(), None);
    assert_eq!(ev.is_reply(), None);
    assert_eq!(ev.translation(), None);
    assert_eq!((ev.daddr, ev.dport, ev.proto), (Ipv4Addr::new(10, 96, 0, 99), 53, 17));
    assert_eq!(ev.to_bytes(), DROP_NO_SERVICE);
}

#[test]
fn records_of_another_length_or_type_are_refused() {
    assert_eq!(FlowEvent::parse(&TRACE_TO_OVERLAY[..47]), Err(DecodeError::Length(47)));
    assert_eq!(FlowEvent::parse(&[0u8; 56]), Err(DecodeError::Length(56)));
    let mut bad = TRACE_TO_OVERLAY;
    bad[8] = 2;
    assert_eq!(FlowEvent::parse(&bad), Err(DecodeError::Type(2)));
}

#[test]
fn observation_points_keep_ciliums_codes_and_names() {
    for code in 0..=12u8 {
        let point = ObservationPoint::from_code(code);
        assert_eq!(point.code(), code);
    }
    assert_eq!(ObservationPoint::from_code(0).name(), "to-endpoint");
    assert_eq!(ObservationPoint::from_code(0).proto_number(), 101);
    assert_eq!(ObservationPoint::from_code(4).name(), "to-overlay");
    assert_eq!(ObservationPoint::from_code(4).proto_name(), "TO_OVERLAY");
    assert_eq!(ObservationPoint::from_code(5).name(), "from-endpoint");
    assert_eq!(ObservationPoint::from_code(10).name(), "from-network");
    assert_eq!(ObservationPoint::from_code(1), ObservationPoint::Other(1));
}

#[test]
fn every_drop_reason_the_datapath_gives_has_a_name() {
    for reason in DropReason::ALL {
        assert_ne!(reason.description(), "Unknown reason", "{reason:?}");
        assert_ne!(reason.proto_name(), "DROP_REASON_UNKNOWN", "{reason:?}");
    }
    assert_eq!(DropReason(200).description(), "Unknown reason");
}

#[test]
fn monotonic_times_become_wall_clock_times() {
    assert_eq!(monotonic_to_unix_ns(900, 1_000, 1_700_000_000_000), 1_699_999_999_900);
    // an event stamped after "now" was read (another CPU) is put at now
    assert_eq!(monotonic_to_unix_ns(1_100, 1_000, 5_000), 5_000);
}

#[test]
fn tcp_flags_are_named_in_hubbles_order() {
    assert_eq!(tcp_flag_names(0x11), ["ACK", "FIN"]);
    assert_eq!(tcp_flag_names(0x12), ["SYN", "ACK"]);
    assert!(tcp_flag_names(0).is_empty());
}
