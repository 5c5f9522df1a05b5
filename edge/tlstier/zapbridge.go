package tlstier

import (
	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zerologCore is a zapcore.Core that writes certmagic's zap entries to a
// zerolog.Logger, so the library's logs share the process's format and
// destination instead of certmagic's default stderr logger.
//
// It is immutable; With returns a copy.
type zerologCore struct {
	log    zerolog.Logger
	fields []zapcore.Field
}

var _ zapcore.Core = (*zerologCore)(nil)

// newZapLogger returns a zap.Logger backed by log.
func newZapLogger(log zerolog.Logger) *zap.Logger {
	return zap.New(&zerologCore{log: log})
}

// Enabled reports whether log would write an entry at level l.
func (c *zerologCore) Enabled(l zapcore.Level) bool {
	zl := zerologLevel(l)
	return zl >= c.log.GetLevel() && zl >= zerolog.GlobalLevel()
}

// With returns a core that adds fields to every entry.
func (c *zerologCore) With(fields []zapcore.Field) zapcore.Core {
	merged := make([]zapcore.Field, 0, len(c.fields)+len(fields))
	merged = append(merged, c.fields...)
	merged = append(merged, fields...)
	return &zerologCore{log: c.log, fields: merged}
}

// Check adds c to ce if the entry's level is enabled.
func (c *zerologCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

// Write logs ent with c's fields and then fields. zap's Panic and Fatal
// semantics stay with zap (the CheckedEntry); zerolog only writes.
func (c *zerologCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	ev := c.log.WithLevel(zerologLevel(ent.Level))
	if ev == nil {
		return nil
	}
	if ent.LoggerName != "" {
		ev = ev.Str("logger", ent.LoggerName)
	}
	ev.Fields(enc.Fields).Msg(ent.Message)
	return nil
}

// Sync is a no-op: zerolog writes synchronously.
func (c *zerologCore) Sync() error { return nil }

func zerologLevel(l zapcore.Level) zerolog.Level {
	switch l {
	case zapcore.DebugLevel:
		return zerolog.DebugLevel
	case zapcore.InfoLevel:
		return zerolog.InfoLevel
	case zapcore.WarnLevel:
		return zerolog.WarnLevel
	case zapcore.ErrorLevel:
		return zerolog.ErrorLevel
	case zapcore.DPanicLevel, zapcore.PanicLevel:
		return zerolog.PanicLevel
	case zapcore.FatalLevel:
		return zerolog.FatalLevel
	}
	if l < zapcore.DebugLevel {
		return zerolog.TraceLevel
	}
	return zerolog.ErrorLevel
}
