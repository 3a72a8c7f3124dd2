//! The kernel side of flow events, opened from the node's pins: the ring buffer reader
//! ([`EventReader`]), the events level, and the counters that are always on (drops by reason,
//! forwards by observation point, events lost). See `bpf/lib/events.h` for what the datapath
//! writes and what it costs.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};

use crate::error::{Error, Result};
use crate::events::{DropReason, FlowEvent, ObservationPoint};
use crate::events_abi::{
    self, DROP_REASONS_MAX, EVENTS_ALL, EVENTS_MEDIUM, EVENTS_OFF, EventsConfig, OBS_POINTS_MAX, PktCount,
};

/// How many events the datapath writes (`events_config.level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventsLevel {
    /// Counters only.
    #[default]
    Off,
    /// Every drop; traces of TCP packets that open or close a connection and of non-TCP packets,
    /// at the point they leave by (Cilium's monitor aggregation "medium").
    Medium,
    /// Every drop, and a trace of every packet where it enters and where it leaves.
    All,
}

impl EventsLevel {
    pub fn code(self) -> u32 {
        match self {
            EventsLevel::Off => EVENTS_OFF,
            EventsLevel::Medium => EVENTS_MEDIUM,
            EventsLevel::All => EVENTS_ALL,
        }
    }

    pub fn from_code(code: u32) -> Self {
        match code {
            EVENTS_OFF => EventsLevel::Off,
            EVENTS_MEDIUM => EventsLevel::Medium,
            _ => EventsLevel::All,
        }
    }
}

/// Packets and bytes, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// The counters of a node's datapath, summed over CPUs; zero rows are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatapathCounters {
    pub drops: Vec<(DropReason, Count)>,
    pub forwards: Vec<(ObservationPoint, Count)>,
    /// Events the ring buffer had no room for, since the maps were created.
    pub events_lost: u64,
    /// Events written to the ring buffer, since the maps were created.
    pub events_written: u64,
}

impl DatapathCounters {
    /// Drops of one reason.
    pub fn drops_of(&self, reason: DropReason) -> Count {
        self.drops.iter().find(|(r, _)| *r == reason).map(|(_, c)| *c).unwrap_or_default()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|(_, c)| c.packets).sum()
    }
}

fn open(pin_dir: &Path, name: &'static str) -> Result<Map> {
    let data = MapData::from_pin(pin_dir.join(name))
        .map_err(Error::map(name, format!("open pin in {}", pin_dir.display())))?;
    Map::from_map_data(data).map_err(Error::map(name, "inspect"))
}

/// The level and the counters, from the pins (no programs needed: the CLI can read them too).
pub struct EventMaps {
    config: Array<MapData, EventsConfig>,
    stats: PerCpuArray<MapData, u64>,
    drops: PerCpuArray<MapData, PktCount>,
    forwards: PerCpuArray<MapData, PktCount>,
}

impl EventMaps {
    pub fn open(pin_dir: &Path) -> Result<Self> {
        let typed = |name: &'static str| open(pin_dir, name);
        Ok(EventMaps {
            config: Array::try_from(typed(events_abi::MAP_EVENTS_CFG)?)
                .map_err(Error::map(events_abi::MAP_EVENTS_CFG, "open as array"))?,
            stats: PerCpuArray::try_from(typed(events_abi::MAP_EVENTS_STATS)?)
                .map_err(Error::map(events_abi::MAP_EVENTS_STATS, "open as per-CPU array"))?,
            drops: PerCpuArray::try_from(typed(events_abi::MAP_DROP_COUNTS)?)
                .map_err(Error::map(events_abi::MAP_DROP_COUNTS, "open as per-CPU array"))?,
            forwards: PerCpuArray::try_from(typed(events_abi::MAP_FWD_COUNTS)?)
                .map_err(Error::map(events_abi::MAP_FWD_COUNTS, "open as per-CPU array"))?,
        })
    }

    pub fn level(&self) -> Result<EventsLevel> {
        let cfg = self.config.get(&0, 0).map_err(Error::map(events_abi::MAP_EVENTS_CFG, "get"))?;
        Ok(EventsLevel::from_code(cfg.level))
    }

    pub fn set_level(&mut self, level: EventsLevel) -> Result<()> {
        let cfg = EventsConfig { level: level.code(), pad: 0 };
        self.config.set(0, cfg, 0).map_err(Error::map(events_abi::MAP_EVENTS_CFG, "set"))
    }

    pub fn events_lost(&self) -> Result<u64> {
        self.stat(events_abi::EVENTS_STAT_LOST)
    }

    pub fn events_written(&self) -> Result<u64> {
        self.stat(events_abi::EVENTS_STAT_WRITTEN)
    }

    fn stat(&self, index: u32) -> Result<u64> {
        let per_cpu =
            self.stats.get(&index, 0).map_err(Error::map(events_abi::MAP_EVENTS_STATS, format!("get {index}")))?;
        Ok(per_cpu.iter().sum())
    }

    pub fn counters(&self) -> Result<DatapathCounters> {
        let sum = |map: &PerCpuArray<MapData, PktCount>, name: &'static str, index: u32| -> Result<Count> {
            let per_cpu = map.get(&index, 0).map_err(Error::map(name, format!("get {index}")))?;
            Ok(per_cpu.iter().fold(Count::default(), |acc, c| Count {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            }))
        };
        let mut out = DatapathCounters {
            events_lost: self.events_lost()?,
            events_written: self.events_written()?,
            ..Default::default()
        };
        for reason in 0..DROP_REASONS_MAX {
            let c = sum(&self.drops, events_abi::MAP_DROP_COUNTS, reason)?;
            if c.packets > 0 {
                out.drops.push((DropReason(reason as u8), c));
            }
        }
        for point in 0..OBS_POINTS_MAX {
            let c = sum(&self.forwards, events_abi::MAP_FWD_COUNTS, point)?;
            if c.packets > 0 {
                out.forwards.push((ObservationPoint::from_code(point as u8), c));
            }
        }
        Ok(out)
    }
}

/// What one [`EventReader::read`] returned.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub events: Vec<FlowEvent>,
    /// Records that did not decode (another build's layout); counted, never fatal.
    pub undecodable: u64,
}

/// The consumer of the `cilia_events` ring buffer. One per node: a ring buffer has a single
/// consumer position, so two readers would split the events between them.
pub struct EventReader {
    ring: RingBuf<MapData>,
}

impl EventReader {
    pub fn open(pin_dir: &Path) -> Result<Self> {
        let ring = RingBuf::try_from(open(pin_dir, events_abi::MAP_EVENTS)?)
            .map_err(Error::map(events_abi::MAP_EVENTS, "open as ring buffer"))?;
        Ok(EventReader { ring })
    }

    /// Waits up to `timeout` for events (poll on the ring buffer's fd), then takes up to `max`.
    /// Returns an empty batch on timeout. Blocking: run it on a thread of its own. The datapath
    /// wakes the poll only once a backlog builds up ([`events_abi::EVENTS_WAKEUP_BYTES`]), so
    /// `timeout` is also the longest a lone event waits: keep it at
    /// [`events_abi::EVENTS_POLL_MS`] or less.
    pub fn read(&mut self, timeout: Duration, max: usize) -> Result<ReadBatch> {
        let mut batch = self.drain(max);
        if !batch.events.is_empty() || batch.undecodable > 0 {
            return Ok(batch);
        }
        let mut fds = [libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: fds is a valid array of one pollfd for the duration of the call.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Io {
                    op: "poll the events ring buffer",
                    path: events_abi::MAP_EVENTS.into(),
                    source: err,
                });
            }
        }
        batch = self.drain(max);
        Ok(batch)
    }

    fn drain(&mut self, max: usize) -> ReadBatch {
        let mut batch = ReadBatch::default();
        while batch.events.len() < max {
            let Some(item) = self.ring.next() else { break };
            match FlowEvent::parse(&item) {
                Ok(ev) => batch.events.push(ev),
                Err(_) => batch.undecodable += 1,
            }
        }
        batch
    }
}
