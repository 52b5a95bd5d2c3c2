module github.com/go-mp/mp

go 1.26.8

require (
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/kisielk/og-rek v1.3.0
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/aristanetworks/gomap v0.0.0-20230726210543-f4e41046dced // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/exp v0.0.0-20230725093048-515e97ebf090 // indirect
)
