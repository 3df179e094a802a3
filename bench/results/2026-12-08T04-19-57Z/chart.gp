set terminal pngcairo size 1200,500 font "sans,10"
set output "chart.png"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set grid ytics
set yrange [0:*]
set multiplot layout 1,2 title "ambient node data plane, 2026-12-08T04-19-57Z, load 1.3 on 2 cores"
set title "bulk throughput (iperf3), Gbit/s, higher is better"
plot "throughput.dat" using 2:xtic(1) title "raw TCP", "" using 3 title "stunnel two-hop", "" using 4 title "Node floor, TLS", "" using 5 title "Node floor, TCP", "" using 6 title "HBONE (ztunnel)"
set title "1 KiB request/response round trip, µs, lower is better"
plot "latency.dat" using 2:xtic(1) title "raw TCP", "" using 3 title "stunnel two-hop", "" using 4 title "Node floor, TLS", "" using 5 title "Node floor, TCP", "" using 6 title "HBONE (ztunnel)"
unset multiplot
