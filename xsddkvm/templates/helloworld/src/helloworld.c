#include <linux/init.h>
#include <linux/module.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Hello world driver built with xsddkvm");

static int __init helloworld_init(void)
{
	pr_info("helloworld: hello from the DDK\n");
	return 0;
}

static void __exit helloworld_exit(void)
{
	pr_info("helloworld: goodbye\n");
}

module_init(helloworld_init);
module_exit(helloworld_exit);
