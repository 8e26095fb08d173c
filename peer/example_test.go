package peer_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/peerlink/peerlink/peer"
)

func ExampleGenerateIdentity() {
	id, err := peer.GenerateIdentity()
	if err != nil {
		log.Fatal(err)
	}
	// The ID is the public key; its text form is what users copy around.
	text := id.ID().String()
	fmt.Println(len(text), "characters")

	// Parsing gives the ID back, upper case included.
	back, err := peer.ParseID(strings.ToUpper(text))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(back == id.ID())
	// Output:
	// 52 characters
	// true
}

func ExampleLoadOrCreateIdentity() {
	dir, err := os.MkdirTemp("", "peerlink-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "node.key")

	first, err := peer.LoadOrCreateIdentity(path) // creates node.key, mode 0600
	if err != nil {
		log.Fatal(err)
	}
	again, err := peer.LoadOrCreateIdentity(path) // loads it
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.ID() == again.ID())
	// Output: true
}

func ExampleParseID() {
	id, err := peer.ParseID("hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(id.ShortString())
	fmt.Printf("%x\n", id[:4])

	_, err = peer.ParseID("hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyg1")
	fmt.Println(err)
	// Output:
	// hvabpq7iio
	// 3d4017c3
	// peer: invalid ID: "hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyg1" has a character outside base32 (a-z, 2-7) at offset 51
}

func ExampleTable() {
	// One entry per peer; the value is usually a pointer to a struct
	// with the peer's own lock.
	type entry struct {
		status peer.Status
	}
	table := peer.NewTable[*entry](0)

	id := peer.MustParseID("hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga")
	e, loaded := table.LoadOrCreate(id, func() *entry { return &entry{status: peer.StatusConnecting} })
	fmt.Println(e.status, loaded)

	if e, ok := table.Get(id); ok {
		fmt.Println(e.status)
	}

	// Remove the entry only if it is still the one we created.
	fmt.Println(table.DeleteIf(id, func(cur *entry) bool { return cur == e }), table.Len())
	// Output:
	// connecting false
	// connecting
	// true 0
}

func ExampleAddrInfo() {
	info := peer.AddrInfo{
		ID:    peer.MustParseID("hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga"),
		Addrs: []string{"127.0.0.1:4001", ""},
	}
	fmt.Println(info.Validate())
	info.Addrs = info.Addrs[:1]
	fmt.Println(info.Validate())
	fmt.Println(info)
	// Output:
	// peer: AddrInfo for hvabpq7iio: address 1 is empty
	// <nil>
	// {hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga: [127.0.0.1:4001]}
}
