package broker

import "time"

// localStream is the log of a Local stream: the messages it retains, each
// with its offset, and nothing else. Each consumer's subscription keeps its
// own read position (localSub.offset); acknowledgements only free prefetch.
// Its fields are guarded by the mu of the queue that owns it.
type localStream struct {
	now     func() time.Time
	entries ring[localStreamEntry] // entries.at(i) has offset base+i
	base    int64                  // offset of the oldest retained message
	bytes   int                    // body bytes retained
}

type localStreamEntry struct {
	msg *localMessage
	at  time.Time // appended
}

// end is the offset the next message will get.
func (st *localStream) end() int64 { return st.base + int64(st.entries.len()) }

// append adds m at the end of the stream, then applies retention.
func (st *localStream) append(spec QueueSpec, m *localMessage) {
	now := st.now()
	st.entries.pushBack(localStreamEntry{msg: m, at: now})
	st.bytes += len(m.Body)
	st.retain(spec, now)
}

// retain drops the oldest messages while the stream exceeds its byte bound
// or they are older than its age bound. Like RabbitMQ, which never deletes
// the segment being written, it keeps the newest message.
func (st *localStream) retain(spec QueueSpec, now time.Time) {
	for st.entries.len() > 1 {
		oldest := st.entries.at(0)
		tooBig := spec.MaxLengthBytes > 0 && st.bytes > spec.MaxLengthBytes
		tooOld := spec.MaxAge > 0 && now.Sub(oldest.at) > spec.MaxAge
		if !tooBig && !tooOld {
			return
		}
		st.entries.popFront()
		st.bytes -= len(oldest.msg.Body)
		st.base++
	}
}

// start returns the offset a subscription starting at o reads first,
// after applying retention by age.
func (st *localStream) start(spec QueueSpec, o StreamOffset) int64 {
	st.retain(spec, st.now())
	switch o.kind {
	case offsetFirst:
		return st.base
	case offsetLast:
		return max(st.base, st.end()-1)
	case offsetAt:
		return max(st.base, o.n)
	}
	return st.end() // offsetNext, and RabbitMQ's default
}

// dispatch hands each subscription the messages from its offset on, up to
// its prefetch. A subscription whose offset retention dropped skips to the
// oldest message retained.
func (st *localStream) dispatch(q *localQueue) {
	end := st.end()
	for _, s := range q.consumers {
		s.offset = max(s.offset, st.base)
		for s.offset < end && s.inFlight() < s.c.spec.Prefetch {
			q.tags++
			e := st.entries.at(int(s.offset - st.base))
			s.give(localEntry{msg: e.msg, tag: q.tags, offset: s.offset})
			s.offset++
		}
	}
}
