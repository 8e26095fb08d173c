package peerstore_test

import (
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/peerlink/peerlink/peerstore"
)

func BenchmarkAddrBookDialOrder(b *testing.B) {
	for _, n := range []int{1, 4, peerstore.MaxAddrs} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var book peerstore.AddrBook
			sources := []peerstore.Source{peerstore.SourceDiscovery, peerstore.SourceDialed, peerstore.SourceManual, peerstore.SourceInbound}
			for i := range n {
				book.Add("198.51.100."+strconv.Itoa(i)+":26656", sources[i%len(sources)], time.Hour, at(time.Duration(i)*time.Second))
			}
			book.Succeeded("198.51.100.0:26656", at(time.Minute))
			now := at(2 * time.Minute)
			b.ReportAllocs()
			for b.Loop() {
				book.DialOrder(now)
			}
		})
	}
}

func BenchmarkHistoryObserveRTT(b *testing.B) {
	var h peerstore.History
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(100 * time.Millisecond)
		h.ObserveRTT(25*time.Millisecond, now)
	}
}

var sink *peerstore.AddrBook

// BenchmarkAddrBookOneAddr measures the heap a record's address book
// takes with one address: the AddrBook itself, its one-entry array and
// its copy of the address. B/op is that figure; B/book reports it from
// runtime.MemStats over many books kept alive at once.
func BenchmarkAddrBookOneAddr(b *testing.B) {
	const addr = "203.0.113.7:26656"
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		book := new(peerstore.AddrBook)
		book.Add(addr, peerstore.SourceDialed, time.Hour, now)
		sink = book
	}

	const n = 10000
	books := make([]*peerstore.AddrBook, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range books {
		books[i] = new(peerstore.AddrBook)
		books[i].Add(addr, peerstore.SourceDialed, time.Hour, now)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(books)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/book")
	b.ReportMetric(float64(unsafe.Sizeof(peerstore.History{})), "B/History")
}
