//! Looking up, bringing up and deleting links.

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::LinkUnspec;

use crate::error::Result;
use crate::handle::Netconf;

/// The facts about a link that callers of this crate need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// IFLA_IFALIAS, where cilia records which container a pod veth belongs to.
    pub alias: Option<String>,
}

impl LinkInfo {
    pub(crate) fn from_message(msg: &LinkMessage) -> Self {
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            mtu: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            alias: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => info.name = n.clone(),
                LinkAttribute::Address(a) if a.len() == 6 => {
                    info.mac = Some(a.as_slice().try_into().expect("length checked"));
                }
                LinkAttribute::Mtu(m) => info.mtu = Some(*m),
                LinkAttribute::IfAlias(a) => info.alias = Some(a.clone()),
                _ => {}
            }
        }
        info
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl Netconf {
    /// The link called `name`, or `None` if there is none.
    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut request = std::pin::pin!(self.handle.link().get().match_name(name).execute());
        match request.try_next().await {
            Ok(msg) => Ok(msg.map(|m| LinkInfo::from_message(&m))),
            Err(e) => {
                let err = (self.nl_err("get link", name))(e);
                if err.is_not_found() { Ok(None) } else { Err(err) }
            }
        }
    }

    /// The link called `name`; an error naming `op` if it is missing.
    pub async fn require_link(&self, op: &'static str, name: &str) -> Result<LinkInfo> {
        self.link(name).await?.ok_or_else(|| self.no_device(op, name))
    }

    /// Every link of the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        let msgs: Vec<LinkMessage> =
            self.handle.link().get().execute().try_collect().await.map_err(self.nl_err("list links", "*"))?;
        Ok(msgs.iter().map(LinkInfo::from_message).collect())
    }

    /// Sets the link administratively up.
    pub async fn set_link_up(&self, index: u32, name: &str) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(self.nl_err("set link up", name))
    }

    /// Deletes the link called `name`; `Ok(false)` if it did not exist.
    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        self.delete_link_index(link.index, name).await
    }

    /// Deletes a link by index; `Ok(false)` if it vanished meanwhile.
    pub async fn delete_link_index(&self, index: u32, name: &str) -> Result<bool> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = (self.nl_err("delete link", name))(e);
                if err.is_not_found() { Ok(false) } else { Err(err) }
            }
        }
    }
}
