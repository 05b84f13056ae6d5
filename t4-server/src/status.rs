//! Errors as gRPC statuses, with etcd's codes and messages.
//!
//! etcd clients recognise errors by their message, so the message is exactly the string
//! `t4_core::Error` displays (etcd's `rpctypes` text); the code is
//! `t4_core::Error::grpc_code`. Nothing here spells an etcd string itself.

use tonic::{Code, Status};

/// A `t4_core` error as etcd would send it.
pub fn core_status(e: &t4_core::Error) -> Status {
    Status::new(Code::from(e.grpc_code() as i32), e.to_string())
}

/// An embedded-API error as a gRPC status.
pub fn node_status(e: t4::Error) -> Status {
    match e {
        t4::Error::Request(e) => core_status(&e),
        t4::Error::WatchCompacted { .. } => core_status(&t4_core::Error::Compacted),
        t4::Error::Closed => core_status(&t4_core::Error::Stopped),
        other => Status::internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcd_codes_and_strings() {
        let s = node_status(t4::Error::Request(t4_core::Error::Compacted));
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = node_status(t4::Error::Request(t4_core::Error::LeaseNotFound));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        let s = node_status(t4::Error::Closed);
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "etcdserver: server stopped");
    }
}
