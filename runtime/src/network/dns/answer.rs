//! Turns one DNS query into a reply from the registry, or into a decision to forward it.
//! Pure: no sockets here, so every case is unit-tested.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::registry::DnsRegistry;
use super::LOCAL_TTL;

/// UDP payload we advertise in EDNS replies (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// How the query reached us: UDP replies must fit the client's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// What to do with a query.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a local name: forward the raw query upstream; the parsed query is kept to
    /// build a SERVFAIL if every upstream fails.
    Forward(Box<Message>),
    /// Not something to answer (e.g. a response sent to us, or a few stray bytes).
    Ignore,
}

/// Decides how to answer `bytes`, received from `asker` on the server of `network`.
pub(crate) fn decide(
    registry: &DnsRegistry,
    network: &str,
    asker: IpAddr,
    bytes: &[u8],
    transport: Transport,
) -> Decision {
    let query = match Message::from_vec(bytes) {
        Ok(query) => query,
        Err(_) => return format_error(bytes),
    };
    if query.message_type() != MessageType::Query {
        return Decision::Ignore;
    }
    if query.op_code() != OpCode::Query {
        return reply(&query, ResponseCode::NotImp, Vec::new(), transport);
    }
    let [question] = query.queries() else {
        return reply(&query, ResponseCode::FormErr, Vec::new(), transport);
    };
    match local_answers(registry, network, asker, question) {
        Some(answers) => reply(&query, ResponseCode::NoError, answers, transport),
        None => Decision::Forward(Box::new(query)),
    }
}

/// SERVFAIL for a query no upstream answered.
pub(crate) fn server_failure(query: &Message) -> Vec<u8> {
    match reply(query, ResponseCode::ServFail, Vec::new(), Transport::Tcp) {
        Decision::Reply(bytes) => bytes,
        // Encoding a header and the question we decoded cannot fail; answer nothing if it did.
        Decision::Forward(_) | Decision::Ignore => Vec::new(),
    }
}

/// The records for a local name (possibly none: AAAA and other types of a local name get
/// an empty NOERROR, since containers have no IPv6 here); `None` when the name is not
/// local to this asker.
fn local_answers(
    registry: &DnsRegistry,
    network: &str,
    asker: IpAddr,
    question: &Query,
) -> Option<Vec<Record>> {
    let name = question.name();
    if question.query_type() == RecordType::PTR {
        let ip = ptr_address(name)?;
        let targets = registry.resolve_ptr(asker, network, ip)?;
        let records = targets
            .iter()
            .filter_map(|target| Name::from_ascii(format!("{target}.")).ok())
            .map(|target| Record::from_rdata(name.clone(), LOCAL_TTL, RData::PTR(PTR(target))))
            .collect();
        return Some(records);
    }
    let addresses = registry.resolve_a(asker, network, &name.to_ascii())?;
    if question.query_type() != RecordType::A {
        return Some(Vec::new());
    }
    Some(
        addresses
            .into_iter()
            .map(|ip| Record::from_rdata(name.clone(), LOCAL_TTL, RData::A(A(ip))))
            .collect(),
    )
}

/// The IPv4 address of a `d.c.b.a.in-addr.arpa.` name (any case, root dot optional).
fn ptr_address(name: &Name) -> Option<Ipv4Addr> {
    let name = super::registry::normalize(&name.to_ascii());
    let reversed = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut labels = reversed.split('.');
    for octet in octets.iter_mut().rev() {
        *octet = labels.next()?.parse().ok()?;
    }
    match labels.next() {
        None => Some(Ipv4Addr::from(octets)),
        Some(_) => None,
    }
}

/// FORMERR for bytes that do not parse but carry a message id; nothing for less.
fn format_error(bytes: &[u8]) -> Decision {
    match bytes {
        // Never answer what claims to be a response (QR bit set): no reply loops.
        [_, _, flags, ..] if flags & 0x80 != 0 => Decision::Ignore,
        [high, low, _, ..] => {
            let id = u16::from_be_bytes([*high, *low]);
            let message = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            message.to_vec().map_or(Decision::Ignore, Decision::Reply)
        }
        _ => Decision::Ignore,
    }
}

fn reply(
    query: &Message,
    code: ResponseCode,
    answers: Vec<Record>,
    transport: Transport,
) -> Decision {
    let mut response = Message::new();
    response
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(code == ResponseCode::NoError)
        .set_response_code(code)
        .add_queries(query.queries().iter().cloned())
        .add_answers(answers);
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    let Ok(bytes) = response.to_vec() else {
        return Decision::Ignore;
    };
    if transport == Transport::Udp && bytes.len() > usize::from(query.max_payload()) {
        // Too big for the client's UDP buffer: the TC bit makes it retry over TCP.
        return response
            .truncate()
            .to_vec()
            .map_or(Decision::Ignore, Decision::Reply);
    }
    Decision::Reply(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::dns::DnsRecord;

    fn registry() -> DnsRegistry {
        let registry = DnsRegistry::new();
        for (id, last, name) in [("c1", 2, "proj-web-1"), ("c2", 3, "proj-web-2")] {
            registry
                .add(
                    "front",
                    DnsRecord {
                        container_id: id.to_string(),
                        ipv4: Ipv4Addr::new(10, 213, 1, last),
                        name: name.to_string(),
                        aliases: vec!["web".to_string()],
                    },
                )
                .unwrap();
        }
        registry
    }

    fn query(name: &str, kind: RecordType) -> Message {
        let mut message = Message::new();
        message
            .set_id(4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message
    }

    fn asker() -> IpAddr {
        IpAddr::from([10, 213, 1, 2])
    }

    fn decide_message(message: &Message, transport: Transport) -> Decision {
        decide(
            &registry(),
            "front",
            asker(),
            &message.to_vec().unwrap(),
            transport,
        )
    }

    fn reply_of(decision: Decision) -> Message {
        match decision {
            Decision::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_query_for_a_service_answers_every_replica_with_ttl_600() {
        let response = reply_of(decide_message(
            &query("WEB.", RecordType::A),
            Transport::Udp,
        ));
        assert_eq!(response.id(), 4242);
        assert_eq!(response.response_code(), ResponseCode::NoError);
        assert!(response.recursion_desired() && response.recursion_available());
        assert_eq!(response.queries().len(), 1, "the question is echoed");
        let mut addresses: Vec<Ipv4Addr> = response
            .answers()
            .iter()
            .map(|record| match record.data() {
                RData::A(A(ip)) => *ip,
                other => panic!("unexpected record {other:?}"),
            })
            .collect();
        addresses.sort();
        assert_eq!(
            addresses,
            [Ipv4Addr::new(10, 213, 1, 2), Ipv4Addr::new(10, 213, 1, 3)]
        );
        assert!(response
            .answers()
            .iter()
            .all(|record| record.ttl() == LOCAL_TTL));
        // The answer's owner name is the question's, as asked (case kept).
        assert_eq!(response.answers()[0].name().to_ascii(), "WEB.");
    }

    #[test]
    fn aaaa_and_other_types_of_a_local_name_are_empty_noerror() {
        for kind in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let response = reply_of(decide_message(&query("web.", kind), Transport::Udp));
            assert_eq!(response.response_code(), ResponseCode::NoError, "{kind}");
            assert!(response.answers().is_empty(), "{kind}");
        }
    }

    #[test]
    fn unknown_names_and_foreign_ptrs_are_forwarded() {
        for (name, kind) in [
            ("example.com.", RecordType::A),
            ("example.com.", RecordType::AAAA),
            ("9.1.213.10.in-addr.arpa.", RecordType::PTR),
        ] {
            match decide_message(&query(name, kind), Transport::Udp) {
                Decision::Forward(message) => assert_eq!(message.id(), 4242),
                other => panic!("{name} {kind}: expected forwarding, got {other:?}"),
            }
        }
    }

    #[test]
    fn ptr_of_a_container_address_gives_its_name() {
        let response = reply_of(decide_message(
            &query("3.1.213.10.in-addr.arpa.", RecordType::PTR),
            Transport::Udp,
        ));
        let targets: Vec<String> = response
            .answers()
            .iter()
            .map(|record| match record.data() {
                RData::PTR(PTR(target)) => target.to_ascii(),
                other => panic!("unexpected record {other:?}"),
            })
            .collect();
        assert_eq!(targets, ["proj-web-2.front."]);
    }

    #[test]
    fn ptr_names_parse_only_as_full_ipv4_addresses() {
        let parse = |name: &str| ptr_address(&Name::from_ascii(name).unwrap());
        assert_eq!(
            parse("4.3.2.1.IN-ADDR.ARPA."),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(parse("3.2.1.in-addr.arpa."), None);
        assert_eq!(parse("5.4.3.2.1.in-addr.arpa."), None);
        assert_eq!(parse("256.3.2.1.in-addr.arpa."), None);
        assert_eq!(parse("4.3.2.1.ip6.arpa."), None);
    }

    #[test]
    fn malformed_queries_get_formerr_and_responses_are_ignored() {
        let garbage = [0x12, 0x34, 0x01, 0x00, 0x00, 0x05];
        let response = reply_of(decide(
            &registry(),
            "front",
            asker(),
            &garbage,
            Transport::Udp,
        ));
        assert_eq!(response.id(), 0x1234);
        assert_eq!(response.response_code(), ResponseCode::FormErr);
        assert!(matches!(
            decide(&registry(), "front", asker(), &[0x12], Transport::Udp),
            Decision::Ignore
        ));
        let mut response = query("web.", RecordType::A);
        response.set_message_type(MessageType::Response);
        assert!(matches!(
            decide_message(&response, Transport::Udp),
            Decision::Ignore
        ));
    }

    #[test]
    fn other_opcodes_and_several_questions_are_refused() {
        let mut update = query("web.", RecordType::A);
        update.set_op_code(OpCode::Update);
        let response = reply_of(decide_message(&update, Transport::Udp));
        assert_eq!(response.response_code(), ResponseCode::NotImp);
        let mut two = query("web.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("db.").unwrap(),
            RecordType::A,
        ));
        let response = reply_of(decide_message(&two, Transport::Udp));
        assert_eq!(response.response_code(), ResponseCode::FormErr);
    }

    #[test]
    fn servfail_echoes_the_question() {
        let message = query("example.com.", RecordType::A);
        let response = Message::from_vec(&server_failure(&message)).unwrap();
        assert_eq!(response.response_code(), ResponseCode::ServFail);
        assert_eq!(response.id(), 4242);
        assert_eq!(response.queries(), message.queries());
    }

    #[test]
    fn udp_answers_too_big_for_the_client_are_truncated() {
        let registry = DnsRegistry::new();
        for last in 1..=60u8 {
            registry
                .add(
                    "front",
                    DnsRecord {
                        container_id: format!("c{last}"),
                        ipv4: Ipv4Addr::new(10, 213, 1, last),
                        name: format!("proj-big-{last}"),
                        aliases: vec!["big".to_string()],
                    },
                )
                .unwrap();
        }
        let bytes = query("big.", RecordType::A).to_vec().unwrap();
        let asker = IpAddr::from([10, 213, 1, 1]);
        let udp = reply_of(decide(&registry, "front", asker, &bytes, Transport::Udp));
        assert!(udp.truncated());
        assert!(udp.answers().is_empty());
        let tcp = reply_of(decide(&registry, "front", asker, &bytes, Transport::Tcp));
        assert!(!tcp.truncated());
        assert_eq!(tcp.answers().len(), 60);
    }
}
